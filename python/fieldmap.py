"""Receptive-field geometry of a model's layers, read from its torch.fx graph.

The original NetDissect upsamples a unit's map through the centres of the units' receptive
fields. Per image axis, a layer's geometry is three integers: ``offset``, the image
coordinate (pixels, may be negative) of the first pixel of cell 0's field; ``size``, the
field's extent in pixels; ``stride``, the pixels between neighbouring cells. Cell ``j``'s
field starts at ``offset + stride·j`` and its centre is ``offset + (size - 1) / 2 +
stride·j``. Along a path from the image the geometry composes as in the original's field
map code: a convolution or pooling with kernel k, stride s, padding p and dilation d is the
step ``(-p, d·(k - 1) + 1, s)``, and putting step ``(o2, k2, s2)`` on top of ``(o1, k1, s1)``
gives ``(o2·s1 + o1, (k2 - 1)·s1 + k1, s2·s1)``.

The graph is traced with torchvision's tracer (so layer names are the node names that
``create_feature_extractor`` takes) and run once on a blank image of the given size, which
gives every node's concrete shape. Each node then gets one of:

- a map: a tensor two of whose dims are the image's y and x, with their geometry;
- global: derived from the image but the same for every position (a squeeze-excitation
  branch after pooling to 1×1, a spatial mean); at a merge with a map it is ignored, as the
  original's ``max_fieldmap`` does, and alone it is not a map;
- constant: not derived from the image (parameters, shapes);
- unknown, with the node and the reason (an upsampling, a transposed convolution, a
  reshape that mixes positions, a module whose geometry is not known).

Ops that neither move nor mix positions (activations, batch norm, dropout, arithmetic,
concatenation along channels, channel indexing, reshapes that keep the image axes) pass the
geometry through. Where maps merge (add, mul, cat) they must agree per axis on the field
centre and the stride, and the result keeps the largest size, as in the original; maps that
disagree make the node unknown, with both geometries in the message. Normalisations whose
statistics span positions (group and instance norm) pass the geometry through too: like a
global branch, they do not move the centres. Composite modules that torchvision's tracer
keeps whole (``Conv2dNormActivation``, ``SqueezeExcitation``) are traced in turn.

    >>> import torchvision
    >>> node_fields(torchvision.models.resnet18(), ["layer4"], 224)["layer4"]
    Field(offset=(-217, -217), size=(435, 435), stride=(32, 32))

Only integers are involved; the results are Python ints.
"""

import contextlib
import inspect
import json
import math
import operator
from typing import NamedTuple

import torch
import torchvision
from torch import fx, nn
from torch.nn import functional as F
from torchvision.models.feature_extraction import NodePathTracer

FORMAT = "netdissect-fields/1"
EXTRA_FILE = "netdissect-fields.json"


class Field(NamedTuple):
    """The geometry of a layer's cells, each pair in (y, x) order."""

    offset: tuple
    size: tuple
    stride: tuple

    def centre(self):
        """Image coordinates of cell (0, 0)'s field centre; cell j's is centre + stride·j."""
        return tuple(o + (s - 1) / 2 for o, s in zip(self.offset, self.size))

    def as_json(self):
        return {"offset": list(self.offset), "size": list(self.size), "stride": list(self.stride)}

    def describe(self):
        """``offset + stride·j, size`` per axis, once when both axes agree."""
        axes = [f"{o} + {t}·j, {s}" for o, s, t in zip(self.offset, self.size, self.stride)]
        return axes[0] if axes[0] == axes[1] else f"y {axes[0]}; x {axes[1]}"


class FieldError(Exception):
    """A layer whose geometry cannot be computed; ``reason`` names the node and the op."""

    def __init__(self, layer, reason):
        super().__init__(f"layer {layer}: {reason}" if layer is not None else reason)
        self.layer = layer
        self.reason = reason


def extra_file_text(fields, input_size):
    """The text of ``netdissect-fields.json``: the layers whose geometry is known.

    ``fields`` maps a layer name to a Field (anything else, such as a FieldError, is left
    out). The text is byte-deterministic: sorted keys, no spaces.
    """
    height, width = _size(input_size)
    layers = {name: field.as_json() for name, field in fields.items() if isinstance(field, Field)}
    document = {"format": FORMAT, "input_size": [height, width], "layers": layers}
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def node_fields(model, nodes, input_size, strict=True):
    """The geometry of the given graph nodes of ``model``, by name.

    Names are those of torchvision's ``get_graph_node_names``; a module name (``layer4``)
    stands for the module's last node, as in ``create_feature_extractor``. With
    ``strict`` a layer whose geometry is unknown raises FieldError; without, its value is
    the FieldError.
    """
    root, graph, names = trace(model)
    chosen = choose_nodes(graph, names, nodes)
    missing = [query for query in nodes if query not in chosen]
    if missing:
        raise FieldError(None, f"no node named {', '.join(missing)}")
    # Keep only what the chosen nodes need, as create_feature_extractor does: the
    # classifier head may not run at every input size, and it does not matter here.
    module = fx.GraphModule(root, graph)
    for node in [n for n in graph.nodes if n.op == "output"]:
        graph.erase_node(node)
    with graph.inserting_after(list(graph.nodes)[-1]):
        graph.output({query: chosen[query] for query in nodes})
    graph.eliminate_dead_code()
    module.recompile()
    return _outputs(module, names, input_size, strict)


def trace(model):
    """``model``'s graph as torchvision's tracer sees it in eval mode.

    Returns ``(root, graph, names)``: the module to build a ``fx.GraphModule`` on, the graph
    and each node's qualified name (the names ``create_feature_extractor`` takes).
    """
    tracer = _tracer()
    with _evaluating(model):
        graph = tracer.trace(model)
    return tracer.root, graph, tracer.node_to_qualname


def choose_nodes(graph, names, queries):
    """The node each query names, as ``create_feature_extractor`` chooses it: the last node
    whose qualified name is the query or lies under it (``layer4`` stands for the output of
    the module's last node). Queries that name no node are left out."""
    chosen = {}
    for node in reversed(list(graph.nodes)):
        qualname = names.get(node)
        if qualname is None:
            continue
        for query in queries:
            if query not in chosen and ".".join(qualname.split(".")[: query.count(".") + 1]) == query:
                chosen[query] = node
                break
    return chosen


def output_fields(module, input_size, strict=True):
    """The geometry of each entry of the dict that ``module``'s forward returns."""
    if not isinstance(module, fx.GraphModule):
        root, graph, names = trace(module)
        module = fx.GraphModule(root, graph)
    else:
        names = {}
    return _outputs(module, names, input_size, strict)


@contextlib.contextmanager
def _evaluating(module):
    """``module`` in eval mode, each submodule's mode restored afterwards (``train(mode)``
    would set every submodule to the same mode)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _tracer():
    """torchvision's tracer with the arguments create_feature_extractor gives it."""
    leaves = [c for _, c in inspect.getmembers(torchvision.ops)
              if inspect.isclass(c) and issubclass(c, nn.Module)]
    return NodePathTracer(autowrap_modules=(math, torchvision.ops), leaf_modules=leaves)


def _size(input_size):
    if isinstance(input_size, int):
        return input_size, input_size
    height, width = input_size
    return int(height), int(width)


def _outputs(module, names, input_size, strict):
    height, width = _size(input_size)
    image = torch.zeros(1, 3, height, width)
    interpreter = _Interpreter(module, names, "", [_Map((2, 3), ((0, 1, 1), (0, 1, 1)))])
    with _evaluating(module), torch.no_grad():
        values = interpreter.run(image)
    states = interpreter.output_state
    if not isinstance(values, dict):
        raise FieldError(None, f"the model returns a {type(values).__name__}, not a dict of layers")
    fields = {}
    for name, value in values.items():
        try:
            fields[name] = _field(name, states[name], value)
        except FieldError as e:
            if strict:
                raise
            fields[name] = e
    return fields


def _field(name, state, value):
    if isinstance(state, _Unknown):
        raise FieldError(name, state.message)
    if state is _GLOBAL:
        raise FieldError(name, "it is pooled over the whole image, not a map")
    if not isinstance(state, _Map) or not isinstance(value, torch.Tensor):
        raise FieldError(name, "it does not depend on the image positions, not a map")
    if value.dim() != 4 or state.axes != (2, 3):
        raise FieldError(name, f"its image axes are dims {state.axes} of a {value.dim()}-d tensor, "
                               "not dims (2, 3) of (N, C, H, W)")
    (oy, sy, ty), (ox, sx, tx) = state.geometry
    return Field((oy, ox), (sy, sx), (ty, tx))


# What each node of the graph is, for geometry.
class _Map:
    """A tensor whose dims ``axes`` are the image's (y, x), with their (offset, size, stride)."""

    __slots__ = ("axes", "geometry")

    def __init__(self, axes, geometry):
        self.axes = tuple(axes)
        self.geometry = tuple(geometry)


class _Global:
    """Derived from the image but the same for every position."""


_GLOBAL = _Global()


class _Unknown:
    __slots__ = ("message",)

    def __init__(self, message):
        self.message = message


_CONST = None  # not derived from the image


class _Unsupported(Exception):
    """Raised by a rule: the node's geometry is unknown for the reason given."""


def _describe(geometry):
    axes = [f"{o} + {t}·j, size {s} (centre {o + (s - 1) / 2:g})" for o, s, t in geometry]
    return axes[0] if axes[0] == axes[1] else f"y {axes[0]}; x {axes[1]}"


def _compose(lower, step):
    """The original's compose_fieldmap for one axis: ``step`` on top of ``lower``."""
    o1, s1, t1 = lower
    o2, s2, t2 = step
    return (o2 * t1 + o1, (s2 - 1) * t1 + s1, t2 * t1)


def _pair(value, name):
    if isinstance(value, (tuple, list, torch.Size)):
        if len(value) == 1:
            value = (value[0], value[0])
        if len(value) != 2:
            raise _Unsupported(f"has a {name} of {len(value)} values, not 2")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _bind(args, kwargs, names, defaults):
    """Positional and keyword arguments as a dict over ``names``, with defaults."""
    bound = dict(defaults)
    bound.update(zip(names, args))
    bound.update(kwargs)
    return bound


def _leaves(state):
    if isinstance(state, (tuple, list)):
        for s in state:
            yield from _leaves(s)
    elif isinstance(state, dict):
        for s in state.values():
            yield from _leaves(s)
    else:
        yield state


def _like(value, leaf):
    """``leaf`` for every tensor in ``value``'s structure, constant elsewhere."""
    if isinstance(value, torch.Tensor):
        return leaf
    if isinstance(value, (tuple, list)):
        return tuple(_like(v, leaf) for v in value)
    if isinstance(value, dict):
        return {k: _like(v, leaf) for k, v in value.items()}
    return _CONST


def _fn(module, *names):
    return {getattr(module, n) for n in names if hasattr(module, n)}


_POINTWISE_FUNCTIONS = (
    _fn(operator, "add", "sub", "mul", "truediv", "floordiv", "mod", "neg", "pos", "abs", "pow",
        "iadd", "isub", "imul", "itruediv", "and_", "or_", "eq", "ne", "lt", "le", "gt", "ge")
    | _fn(torch, "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide",
          "neg", "abs", "exp", "log", "sqrt", "rsqrt", "square", "pow", "reciprocal", "sign",
          "relu", "relu_", "sigmoid", "tanh", "erf", "clamp", "clip", "maximum", "minimum",
          "where", "lerp", "addcmul", "addcdiv", "dropout", "batch_norm", "instance_norm",
          "group_norm", "prelu", "hardswish")
    | _fn(F, "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu",
          "celu", "gelu", "silu", "mish", "hardswish", "hardsigmoid", "hardtanh", "hardtanh_",
          "softplus", "softsign", "softshrink", "hardshrink", "tanhshrink", "sigmoid", "tanh",
          "logsigmoid", "prelu", "rrelu", "threshold", "dropout", "dropout1d", "dropout2d",
          "dropout3d", "alpha_dropout", "feature_alpha_dropout", "batch_norm", "instance_norm",
          "group_norm", "local_response_norm")
    | _fn(torchvision.ops, "stochastic_depth")
)
_POINTWISE_METHODS = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "abs", "exp", "log",
    "sqrt", "rsqrt", "pow", "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp",
    "clamp_", "clamp_min", "clamp_max", "clip", "contiguous", "clone", "detach", "to", "float",
    "half", "double", "bfloat16", "type", "type_as", "__add__", "__radd__", "__mul__",
    "__rmul__", "__sub__", "__rsub__", "__truediv__", "__rtruediv__",
}
_POINTWISE_MODULES = tuple(getattr(nn, n) for n in (
    "Identity", "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "CELU", "SELU", "GELU",
    "SiLU", "Mish", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid", "Hardtanh", "Softplus",
    "Softsign", "Softshrink", "Hardshrink", "Tanhshrink", "LogSigmoid", "Threshold", "Dropout",
    "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout", "BatchNorm2d",
    "SyncBatchNorm", "InstanceNorm2d", "GroupNorm", "LocalResponseNorm", "CrossMapLRN2d",
    "ChannelShuffle") if hasattr(nn, n))
_RESHAPES = _fn(torch, "reshape", "flatten", "unflatten", "squeeze", "unsqueeze")
_RESHAPE_METHODS = {"view", "reshape", "view_as", "reshape_as", "flatten", "unflatten",
                    "squeeze", "unsqueeze"}
_REDUCTIONS = _fn(torch, "mean", "sum", "amax", "amin", "std", "var")
_REDUCTION_METHODS = {"mean", "sum", "amax", "amin", "std", "var"}
_CONCATS = _fn(torch, "cat", "concat", "concatenate")
_SPLITS = _fn(torch, "chunk", "split", "tensor_split")


class _Interpreter(fx.Interpreter):
    """Runs a GraphModule and, beside each node's value, works out its geometry state."""

    def __init__(self, module, names, prefix, input_states):
        super().__init__(module)
        self.names = names
        self.prefix = prefix
        self.input_states = list(input_states)
        self.states = {}
        self.output_state = None

    def node_name(self, node):
        return self.prefix + self.names.get(node, node.name)

    def run_node(self, node):
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        if node.op == "placeholder":
            result = super().run_node(node)
            index = sum(1 for n in self.states if n.op == "placeholder")
            state = self.input_states[index] if index < len(self.input_states) else _CONST
        elif node.op == "output":
            result = args[0]
            state = self.output_state = self.state_of(node.args[0])
        elif node.op == "call_module" and _composite(self.module.get_submodule(node.target)):
            result, state = self.composite(node, args, kwargs)
        else:
            result = getattr(self, node.op)(node.target, args, kwargs)
            state = self.rule(node, args, kwargs, result)
        self.states[node] = state
        return result

    def state_of(self, arg):
        if isinstance(arg, fx.Node):
            return self.states[arg]
        if isinstance(arg, (tuple, list)):
            return tuple(self.state_of(a) for a in arg)
        if isinstance(arg, dict):
            return {k: self.state_of(v) for k, v in arg.items()}
        return _CONST

    def composite(self, node, args, kwargs):
        """A module the tracer kept whole (a torchvision.ops block): traced in turn."""
        module = self.module.get_submodule(node.target)
        states = [self.state_of(a) for a in node.args]
        if kwargs:
            bound = inspect.signature(module.forward).bind(*args, **kwargs)
            bound.apply_defaults()
            state_of = dict(zip(inspect.signature(module.forward).parameters, states))
            state_of.update({k: self.state_of(v) for k, v in node.kwargs.items()})
            args = list(bound.arguments.values())
            states = [state_of.get(k, _CONST) for k in bound.arguments]
        try:
            tracer = NodePathTracer(autowrap_modules=(math, torchvision.ops))
            graph = tracer.trace(module)
        except Exception as e:  # noqa: BLE001 - any tracing failure leaves the node unknown
            result = module(*args)
            return result, _Unknown(f"node {self.node_name(node)} ({type(module).__name__}): "
                                    f"cannot trace the module: {e}")
        inner = _Interpreter(fx.GraphModule(module, graph), tracer.node_to_qualname,
                             self.node_name(node) + ".", states)
        result = inner.run(*args)
        return result, inner.output_state

    def rule(self, node, args, kwargs, result):
        if node.op == "get_attr":
            return _CONST
        inputs = [s for s in _leaves(self.state_of((node.args, node.kwargs))) if s is not _CONST]
        if not inputs or all(s is _CONST for s in _leaves(_like(result, True))):
            # Shapes and sizes (x.shape, x.size(2)) depend on the image's size, not on
            # its values.
            return _CONST
        for s in inputs:
            if isinstance(s, _Unknown):
                return s
        if not any(isinstance(s, _Map) for s in inputs):
            # Whatever is done to a global value stays global: broadcast back to the map's
            # size (expand, interpolate) it is still the same for every position.
            return _like(result, _GLOBAL)
        try:
            return self.map_rule(node, args, kwargs, result)
        except _Unsupported as e:
            return _Unknown(f"node {self.node_name(node)} ({_op(node, self.module)}) {e}")
        except Exception as e:  # noqa: BLE001 - arguments of a form the rules do not expect
            # An op called in an unexpected way leaves its node unknown rather than failing
            # the whole model: the layers before it, or beside it, still have a geometry.
            return _Unknown(f"node {self.node_name(node)} ({_op(node, self.module)}) has "
                            f"arguments the geometry rules do not read ({type(e).__name__}: {e})")

    def map_rule(self, node, args, kwargs, result):
        """The state of a node at least one of whose inputs is a map."""
        target = node.target
        if node.op == "call_module":
            module = self.module.get_submodule(target)
            return _module_rule(self, node, module, args, result)
        if node.op == "call_function":
            if target is operator.getitem:
                return self.getitem(node, args, result)
            if target in _POINTWISE_FUNCTIONS:
                return self.merge(node, result)
            return _function_rule(self, node, target, args, kwargs, result)
        if node.op == "call_method":
            if target in _POINTWISE_METHODS:
                return self.merge(node, result)
            if target in ("size", "dim", "numel", "__len__"):
                return _CONST
            return _method_rule(self, node, target, args, kwargs, result)
        raise _Unsupported("is not an operation whose geometry is known")

    def data(self, node, position=0, name=None):
        """The state of one argument, by keyword ``name`` or else by position."""
        if name is not None and name in node.kwargs:
            state = self.state_of(node.kwargs[name])
        elif position < len(node.args):
            state = self.state_of(node.args[position])
        else:
            state = _CONST
        return state

    def merge(self, node, result, arguments=None):
        """Pointwise and broadcasting ops: the maps among the inputs must agree on centre and
        stride per axis; the result keeps the largest size. Global inputs are ignored."""
        if not isinstance(result, torch.Tensor):
            raise _Unsupported("does not give a tensor")
        if arguments is None:
            arguments = [(a, v) for a, v in _pairs((node.args, node.kwargs),
                                                  self.fetch_args_kwargs_from_env(node))]
        maps = []
        for arg, value in arguments:
            state = self.state_of(arg)
            if not isinstance(state, _Map):
                continue
            if not isinstance(value, torch.Tensor):
                raise _Unsupported("has a map input that is not a tensor")
            shift = result.dim() - value.dim()
            axes = tuple(a + shift for a in state.axes)
            if any(value.shape[a] != result.shape[b] for a, b in zip(state.axes, axes)):
                raise _Unsupported(
                    f"changes the spatial size from {_hw(value.shape, state.axes)} to "
                    f"{_hw(result.shape, axes)}")
            maps.append((arg, axes, state.geometry))
        first_arg, axes, geometry = maps[0]
        merged = list(geometry)
        for arg, other_axes, other in maps[1:]:
            if other_axes != axes:
                raise _Unsupported(f"merges maps whose image axes differ: dims {axes} from "
                                   f"{self.node_name(first_arg)} and {other_axes} from {self.node_name(arg)}")
            for i, ((o1, s1, t1), (o2, s2, t2)) in enumerate(zip(merged, other)):
                if t1 != t2 or 2 * o1 + s1 != 2 * o2 + s2:
                    raise _Unsupported(
                        f"merges maps whose fields disagree: {_describe(geometry)} from "
                        f"{self.node_name(first_arg)} and {_describe(other)} from {self.node_name(arg)}")
                if s2 > s1:
                    merged[i] = (o2, s2, t2)
        return _like(result, _Map(axes, merged))

    def getitem(self, node, args, result):
        base, index = args
        state = self.state_of(node.args[0])
        if isinstance(state, (tuple, list)):
            if isinstance(index, slice):
                return tuple(state[index])
            return state[index]
        if isinstance(state, dict):
            return state[index]
        if not isinstance(state, _Map):
            raise _Unsupported("indexes a map that is not a tensor")
        return _index(state, base.shape, index, result)


def _pairs(args, values):
    """(node argument, concrete value) for every fx.Node in an argument structure."""
    if isinstance(args, fx.Node):
        yield args, values
    elif isinstance(args, (tuple, list)):
        for a, v in zip(args, values):
            yield from _pairs(a, v)
    elif isinstance(args, dict):
        for k in args:
            yield from _pairs(args[k], values[k])


def _composite(module):
    """Whether the module is a block to trace through rather than an op of torch.nn."""
    origin = type(module).__module__
    return not (origin.startswith("torch.nn") or origin.startswith("torch.ao.nn"))


def _op(node, root):
    if node.op == "call_module":
        return type(root.get_submodule(node.target)).__name__
    if node.op == "call_method":
        return f".{node.target}"
    return getattr(node.target, "__name__", str(node.target))


def _hw(shape, axes):
    return "×".join(str(shape[a]) for a in axes)


def _single(interp, node, name="input"):
    """The one map argument of a window op, which must be the first."""
    state = interp.data(node, 0, name)
    if not isinstance(state, _Map):
        raise _Unsupported("has a map in an argument other than its input")
    others = [s for s in _leaves(interp.state_of((node.args[1:], {k: v for k, v in node.kwargs.items()
                                                                     if k != name})))
              if isinstance(s, _Map)]
    if others:
        raise _Unsupported("has a map in an argument other than its input")
    return state


def _window(state, value, kernel, stride, padding, dilation):
    """A convolution or pooling over the last two dims."""
    if value.dim() not in (3, 4) or state.axes != (value.dim() - 2, value.dim() - 1):
        raise _Unsupported(f"slides over dims other than the image axes {state.axes}")
    kernel = _pair(kernel, "kernel size")
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) \
        else _pair(stride, "stride")
    dilation = _pair(dilation, "dilation")
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        # torch pads the smaller half before, the larger after.
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    else:
        padding = _pair(padding, "padding")
    steps = [(-p, d * (k - 1) + 1, s) for k, s, p, d in zip(kernel, stride, padding, dilation)]
    return _Map(state.axes, [_compose(g, s) for g, s in zip(state.geometry, steps)])


def _adaptive(state, value, output_size, result):
    """Adaptive pooling: the identity at the input's size, global at 1×1, a plain pooling
    where the input size is a multiple of the output size."""
    if value.dim() not in (3, 4) or state.axes != (value.dim() - 2, value.dim() - 1):
        raise _Unsupported(f"pools over dims other than the image axes {state.axes}")
    before = tuple(value.shape[a] for a in state.axes)
    after = tuple(result.shape[a] for a in state.axes)
    if after == before:
        return state
    if after == (1, 1):
        return _GLOBAL
    if all(b % a == 0 for a, b in zip(after, before)):
        steps = [(0, b // a, b // a) for a, b in zip(after, before)]
        return _Map(state.axes, [_compose(g, s) for g, s in zip(state.geometry, steps)])
    raise _Unsupported(f"pools {_hw(value.shape, state.axes)} to {_hw(result.shape, state.axes)} "
                       "in windows of unequal sizes")


def _pad(state, value, pad):
    """Constant, reflection or replication padding: cell i shows input cell i - before."""
    steps = list(state.geometry)
    n = value.dim()
    for i in range(len(pad) // 2):
        dim = n - 1 - i
        if dim in state.axes:
            axis = state.axes.index(dim)
            steps[axis] = _compose(steps[axis], (-int(pad[2 * i]), 1, 1))
    return _Map(state.axes, steps)


def _dims(dim, n):
    if dim is None:
        return set(range(n))
    if isinstance(dim, (tuple, list)):
        return {d % n for d in dim}
    return {dim % n}


def _reduce(state, value, dim, keepdim):
    dims = _dims(dim, value.dim())
    spatial = dims & set(state.axes)
    if spatial == set(state.axes):
        return _GLOBAL
    if spatial:
        raise _Unsupported("reduces one image axis but not the other")
    if keepdim:
        return state
    return _Map([a - sum(1 for d in dims if d < a) for a in state.axes], state.geometry)


def _along(state, value, dim, what):
    """An op along ``dim`` (concatenation, softmax, splitting) that must not be an image axis."""
    if dim % value.dim() in state.axes:
        raise _Unsupported(f"{what} along an image axis (dim {dim})")


def _reshape(state, value, result):
    """A reshape keeps an image axis where some output dim has the same size and the same
    row-major stride: then the index along it is the same for every element."""
    def strides(shape):
        out, step = [], 1
        for n in reversed(shape):
            out.append(step)
            step *= n
        return list(reversed(out))
    before, after = strides(value.shape), strides(result.shape)
    axes = []
    for a in state.axes:
        matches = [i for i, (n, s) in enumerate(zip(result.shape, after))
                   if n == value.shape[a] and (s == before[a] or n == 1) and i not in axes]
        if not matches:
            raise _Unsupported(f"reshapes {tuple(value.shape)} to {tuple(result.shape)}, "
                               "which mixes the image axes into other dims")
        axes.append(matches[0])
    if axes[0] >= axes[1]:
        raise _Unsupported(f"reshapes {tuple(value.shape)} to {tuple(result.shape)}, "
                           "which reorders the image axes")
    return _Map(axes, state.geometry)


def _permute(state, order):
    order = [int(d) % len(order) for d in order]
    return _Map([order.index(a) for a in state.axes], state.geometry)


def _index(state, shape, index, result):
    """Indexing a map: full slices, or slices with a step (a strided subsampling) on the
    image axes; integers, None and one 1-D index tensor elsewhere."""
    items = list(index) if isinstance(index, tuple) else [index]
    used = sum(1 for i in items if i is not None and i is not Ellipsis)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (len(shape) - used)
    else:
        items += [slice(None)] * (len(shape) - used)
    geometry = list(state.geometry)
    axes = [None, None]
    in_dim = out_dim = advanced = 0
    for item in items:
        if item is None:
            out_dim += 1
            continue
        spatial = in_dim in state.axes
        if isinstance(item, slice):
            start, stop, step = item.indices(shape[in_dim])
            if spatial:
                if step <= 0:
                    raise _Unsupported("reverses an image axis")
                axis = state.axes.index(in_dim)
                if (start, step) != (0, 1):
                    geometry[axis] = _compose(geometry[axis], (start, 1, step))
                axes[axis] = out_dim
            out_dim += 1
        elif isinstance(item, int):
            if spatial:
                raise _Unsupported("takes a single row or column of the map")
        elif isinstance(item, (torch.Tensor, list)) and not spatial and advanced == 0 \
                and torch.as_tensor(item).dim() == 1:
            advanced += 1
            out_dim += 1
        else:
            raise _Unsupported(f"indexes dim {in_dim} with {type(item).__name__}")
        in_dim += 1
    return _Map(axes, geometry)


def _window_module(module):
    if isinstance(module, nn.Conv2d):
        return module.kernel_size, module.stride, module.padding, module.dilation
    if isinstance(module, nn.MaxPool2d):
        return module.kernel_size, module.stride, module.padding, module.dilation
    if isinstance(module, nn.AvgPool2d):
        return module.kernel_size, module.stride, module.padding, 1
    if isinstance(module, nn.LPPool2d):
        return module.kernel_size, module.stride, 0, 1
    return None


def _module_rule(interp, node, module, args, result):
    value = args[0] if args else None
    if isinstance(module, _POINTWISE_MODULES):
        return interp.merge(node, result)
    window = _window_module(module)
    if window is not None:
        return _window(_single(interp, node), value, *window)
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _like(result, _adaptive(_single(interp, node), value, module.output_size,
                                       result if isinstance(result, torch.Tensor) else result[0]))
    if isinstance(module, (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
                           nn.ReplicationPad2d)):
        return _pad(_single(interp, node), value, module.padding)
    if isinstance(module, (nn.Flatten, nn.Unflatten)):
        return _reshape(_single(interp, node), value, result)
    if isinstance(module, (nn.Linear, nn.LayerNorm)):
        state = _single(interp, node)
        last = 1 if isinstance(module, nn.Linear) else len(module.normalized_shape)
        if set(state.axes) & set(range(value.dim() - last, value.dim())):
            raise _Unsupported("mixes values along an image axis")
        return state
    if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmax2d)):
        state = _single(interp, node)
        dim = -3 if isinstance(module, nn.Softmax2d) else module.dim
        _along(state, value, dim if dim is not None else 1, "normalises")
        return state
    if isinstance(value, torch.Tensor) and isinstance(result, torch.Tensor) and value.dim() == result.dim():
        state = interp.data(node)
        if isinstance(state, _Map) and _hw(value.shape, state.axes) != _hw(result.shape, state.axes):
            raise _Unsupported(f"changes the spatial size from {_hw(value.shape, state.axes)} "
                               f"to {_hw(result.shape, state.axes)}")
    raise _Unsupported("is a module whose geometry is not known")


_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_MAX_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode")
_REDUCE_ARGS = ("input", "dim", "keepdim")


def _function_rule(interp, node, target, args, kwargs, result):
    value = args[0] if args else kwargs.get("input")
    if target is F.conv2d or target is torch.conv2d:
        a = _bind(args, kwargs, _CONV_ARGS, {"stride": 1, "padding": 0, "dilation": 1})
        return _window(_single(interp, node), value, a["weight"].shape[-2:], a["stride"],
                       a["padding"], a["dilation"])
    if target in _fn(F, "max_pool2d", "max_pool2d_with_indices") | _fn(torch, "max_pool2d"):
        a = _bind(args, kwargs, _MAX_POOL_ARGS, {"stride": None, "padding": 0, "dilation": 1})
        return _like(result, _window(_single(interp, node), value, a["kernel_size"], a["stride"],
                                     a["padding"], a["dilation"]))
    if target in _fn(F, "avg_pool2d") | _fn(torch, "avg_pool2d"):
        a = _bind(args, kwargs, _AVG_POOL_ARGS, {"stride": None, "padding": 0})
        return _window(_single(interp, node), value, a["kernel_size"], a["stride"], a["padding"], 1)
    if target in _fn(F, "adaptive_avg_pool2d", "adaptive_max_pool2d",
                     "adaptive_max_pool2d_with_indices") | _fn(torch, "adaptive_avg_pool2d"):
        one = result if isinstance(result, torch.Tensor) else result[0]
        return _like(result, _adaptive(_single(interp, node), value, None, one))
    if target is F.pad:
        a = _bind(args, kwargs, ("input", "pad"), {})
        return _pad(_single(interp, node), value, a["pad"])
    if target in _CONCATS:
        a = _bind(args, kwargs, ("tensors", "dim"), {"dim": 0})
        tensors = [(arg, v) for arg, v in _pairs(node.args[0] if node.args else node.kwargs["tensors"],
                                                 a["tensors"])]
        for arg, v in tensors:
            state = interp.state_of(arg)
            if isinstance(state, _Map):
                _along(state, v, a["dim"], "concatenates")
        return interp.merge(node, result, tensors)
    if target in _SPLITS:
        a = _bind(args, kwargs, ("input", "sections", "dim"), {"dim": 0})
        state = _single(interp, node)
        _along(state, value, a["dim"], "splits")
        return _like(result, state)
    if target in _fn(torch, "softmax", "log_softmax") | _fn(F, "softmax", "log_softmax", "normalize"):
        a = _bind(args, kwargs, ("input", "p", "dim") if target is F.normalize else ("input", "dim"),
                  {"dim": 1})
        state = _single(interp, node)
        _along(state, value, a["dim"] if a["dim"] is not None else 1, "normalises")
        return state
    if target in _fn(F, "linear", "layer_norm") | _fn(torch, "layer_norm"):
        state = _single(interp, node)
        a = _bind(args, kwargs, ("input", "weight_or_shape"), {})
        last = 1 if target is F.linear else len(a["weight_or_shape"])
        if set(state.axes) & set(range(value.dim() - last, value.dim())):
            raise _Unsupported("mixes values along an image axis")
        return state
    if target in _RESHAPES:
        return _reshape(_single(interp, node), value, result)
    if target in _REDUCTIONS:
        a = _bind(args, kwargs, _REDUCE_ARGS, {"dim": None, "keepdim": False})
        return _reduce(_single(interp, node), value, a["dim"], a["keepdim"])
    if target in _fn(torch, "permute"):
        return _permute(_single(interp, node), _bind(args, kwargs, ("input", "dims"), {})["dims"])
    if target in _fn(torch, "transpose", "swapaxes", "swapdims"):
        a = _bind(args, kwargs, ("input", "dim0", "dim1"), {})
        return _transpose(_single(interp, node), value, a["dim0"], a["dim1"])
    return _unknown(interp, node, value, result)


def _transpose(state, value, dim0, dim1):
    order = list(range(value.dim()))
    d0, d1 = dim0 % value.dim(), dim1 % value.dim()
    order[d0], order[d1] = order[d1], order[d0]
    return _permute(state, order)


def _method_rule(interp, node, target, args, kwargs, result):
    value = args[0]
    state = _single(interp, node, "self")
    rest = args[1:]
    if target in _RESHAPE_METHODS:
        return _reshape(state, value, result)
    if target in _REDUCTION_METHODS:
        a = _bind(rest, kwargs, ("dim", "keepdim"), {"dim": None, "keepdim": False})
        return _reduce(state, value, a["dim"], a["keepdim"])
    if target == "permute":
        order = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
        return _permute(state, kwargs.get("dims", order))
    if target in ("transpose", "swapaxes", "swapdims"):
        a = _bind(rest, kwargs, ("dim0", "dim1"), {})
        return _transpose(state, value, a["dim0"], a["dim1"])
    if target in ("chunk", "split", "tensor_split"):
        a = _bind(rest, kwargs, ("sections", "dim"), {"dim": 0})
        _along(state, value, a["dim"], "splits")
        return _like(result, state)
    if target in ("softmax", "log_softmax"):
        a = _bind(rest, kwargs, ("dim",), {})
        _along(state, value, a["dim"], "normalises")
        return state
    return _unknown(interp, node, value, result)


def _unknown(interp, node, value, result):
    state = interp.data(node)
    if isinstance(value, torch.Tensor) and isinstance(result, torch.Tensor) \
            and isinstance(state, _Map) and value.dim() == result.dim() \
            and _hw(value.shape, state.axes) != _hw(result.shape, state.axes):
        raise _Unsupported(f"changes the spatial size from {_hw(value.shape, state.axes)} to "
                           f"{_hw(result.shape, state.axes)}")
    raise _Unsupported("is not an operation whose geometry is known")


def read_extra_file(text):
    """The layers of a ``netdissect-fields.json`` text, as Fields, and its input size."""
    document = json.loads(text)
    if document.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document: format {document.get('format')!r}")
    fields = {name: Field(tuple(g["offset"]), tuple(g["size"]), tuple(g["stride"]))
              for name, g in document["layers"].items()}
    return fields, tuple(document["input_size"])


__all__ = ["EXTRA_FILE", "FORMAT", "Field", "FieldError", "choose_nodes", "extra_file_text",
           "node_fields", "output_fields", "read_extra_file", "trace"]
