//! Loading a TorchScript model and naming what its `forward` returns.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tch::{CModule, Device, IValue, Tensor};

use crate::error::{Error, Result};

/// Where the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when a GPU is usable, the CPU otherwise.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<DeviceChoice> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            other => Err(Error::Config(format!(
                "unknown device `{other}` (use auto, cpu or cuda)"
            ))),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    /// As written in a pipeline file and on the command line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

/// Loads libtorch's CUDA half once. The linker drops `libtorch_cuda.so` from our binaries
/// because no symbol of it is referenced directly; loading it registers the CUDA backend.
/// On a machine without a GPU this costs nothing and CUDA simply stays unavailable.
fn load_cuda_backend() -> std::result::Result<(), String> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let dir = option_env!("ND_LIBTORCH_LIB").unwrap_or("");
            let path = Path::new(dir).join("libtorch_cuda.so");
            if !path.exists() {
                return Err(format!(
                    "{} does not exist: this libtorch has no CUDA support",
                    path.display()
                ));
            }
            let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|e| e.to_string())?;
            // SAFETY: dlopen with a valid NUL-terminated path; the handle is kept for the
            // life of the process on purpose (the library must stay loaded).
            let handle =
                unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns a thread-local C string or null.
                let message = unsafe {
                    let e = libc::dlerror();
                    if e.is_null() {
                        "unknown dlopen error".to_owned()
                    } else {
                        std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
                    }
                };
                return Err(format!("cannot load {}: {message}", path.display()));
            }
            Ok(())
        })
        .clone()
}

/// Resolves a device choice to a torch device.
pub fn resolve_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => {
            if load_cuda_backend().is_ok() && tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Ok(Device::Cpu)
            }
        }
        DeviceChoice::Cuda => {
            load_cuda_backend().map_err(Error::Device)?;
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                // Neutral about where the choice came from: nd-extract names its flag and
                // netdissect run the pipeline's key and line.
                Err(Error::Device(
                    "libtorch sees no CUDA device; choose auto or cpu, or run where a GPU is \
                     visible"
                        .into(),
                ))
            }
        }
    }
}

/// The text of the TorchScript extra file `name` that the archive at `path` carries (the
/// zip entry `<root>/extra/<name>`), or `None` when it carries none or is not a zip (then it
/// is not TorchScript either, which loading the model says better). Reads the zip's
/// directory and that entry, not the model.
pub fn extra_file(path: &Path, name: &str) -> Result<Option<String>> {
    use std::io::Read;
    let fail = |message: String| Error::Model {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| {
        fail(if e.kind() == std::io::ErrorKind::NotFound {
            "no such file".to_owned()
        } else {
            format!("cannot read: {e}")
        })
    })?;
    let Ok(mut archive) = zip::ZipArchive::new(std::io::BufReader::new(file)) else {
        return Ok(None);
    };
    // `<root>/extra/<name>`, whatever the root folder is called.
    let suffix = format!("/extra/{name}");
    let Some(entry) = archive
        .file_names()
        .find(|n| n.ends_with(&suffix) && n.matches('/').count() == 2)
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    let mut text = String::new();
    archive
        .by_name(&entry)
        .map_err(|e| fail(format!("{entry}: {e}")))?
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("{entry}: {e}")))?;
    Ok(Some(text))
}

/// The field maps a TorchScript archive carries as its extra file
/// [`nd_arrays::fields::MODEL_EXTRA_FILE`] (`python/export_torchvision.py` writes them), or
/// `None` when it carries none.
pub fn model_fields(path: &Path) -> Result<Option<nd_arrays::fields::ModelFields>> {
    let name = nd_arrays::fields::MODEL_EXTRA_FILE;
    let Some(text) = extra_file(path, name)? else {
        return Ok(None);
    };
    nd_arrays::fields::ModelFields::parse(&text)
        .map(Some)
        .map_err(|e| Error::Model {
            path: path.to_owned(),
            message: format!("extra file {name}: {e}"),
        })
}

/// The TorchScript extra file in which a model says how to run it on from a layer.
pub const INTERVENTION_EXTRA_FILE: &str = "netdissect-intervention.json";

/// How a model runs on from a dissected layer: its method `method(layer: str,
/// activations: Tensor) -> Tensor` continues the forward pass from `layer`'s activations,
/// as given (a unit set to zero is that unit ablated), to the output that `forward`
/// returns as `output` (the class scores of a classifier, the image of a generator).
///
/// Stored as the extra file [`INTERVENTION_EXTRA_FILE`]:
/// `{"format": 1, "method": "forward_from", "output": "logits", "layers": ["conv5"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervention {
    pub format: u32,
    pub method: String,
    pub output: String,
    /// The layers it can run on from, in the model's order.
    pub layers: Vec<String>,
}

/// How to give a model the intervention method (the end of the messages that miss it).
const HOW_TO_INTERVENE: &str = "export it with python/export_torchvision.py --logits (torchvision \
    classifiers), or give the scripted module a @torch.jit.export method forward_from(layer: \
    str, activations: Tensor) -> Tensor and the extra file netdissect-intervention.json that \
    names it (python/export_torchvision.py shows how)";

/// The intervention record of the model file at `path` ([`Intervention`]), or `None` when
/// it has none.
pub fn model_intervention(path: &Path) -> Result<Option<Intervention>> {
    let Some(text) = extra_file(path, INTERVENTION_EXTRA_FILE)? else {
        return Ok(None);
    };
    let fail = |message: String| Error::Model {
        path: path.to_owned(),
        message: format!("extra file {INTERVENTION_EXTRA_FILE}: {message}"),
    };
    let record: Intervention = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if record.format != 1 {
        return Err(fail(format!(
            "format {} is not one this build reads (1)",
            record.format
        )));
    }
    if record.method.is_empty() || record.output.is_empty() || record.layers.is_empty() {
        return Err(fail("method, output and layers must not be empty".into()));
    }
    Ok(Some(record))
}

/// The TorchScript extra file in which a generator says what its `forward` takes and gives.
pub const GENERATOR_EXTRA_FILE: &str = "netdissect-generator.json";

/// What a generator is: its `forward(z)` takes latent vectors `(N, z_dim)` (standard
/// normal) and returns a dict holding the image `(N, 3, H, W)` under `image`, with values
/// in `range` (`[-1, 1]`: pixel = (v + 1) / 2 · 255), and the activations of `layers`.
/// Running on from a layer to the image is the [`Intervention`] record's business, whose
/// `output` names the same image.
///
/// Stored as the extra file [`GENERATOR_EXTRA_FILE`]:
/// `{"format": 1, "z_dim": 128, "image": "image", "range": [-1, 1], "layers": ["layer1"]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorRecord {
    pub format: u32,
    pub z_dim: usize,
    pub image: String,
    pub range: [f64; 2],
    /// The layers it returns, in the model's order.
    pub layers: Vec<String>,
}

/// The generator record of the model file at `path` ([`GeneratorRecord`]), or `None` when it has
/// none.
pub fn model_generator(path: &Path) -> Result<Option<GeneratorRecord>> {
    let Some(text) = extra_file(path, GENERATOR_EXTRA_FILE)? else {
        return Ok(None);
    };
    let fail = |message: String| Error::Model {
        path: path.to_owned(),
        message: format!("extra file {GENERATOR_EXTRA_FILE}: {message}"),
    };
    let record: GeneratorRecord = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if record.format != 1 {
        return Err(fail(format!(
            "format {} is not one this build reads (1)",
            record.format
        )));
    }
    if record.z_dim == 0 || record.image.is_empty() {
        return Err(fail(
            "z_dim must be at least 1 and image must name an output".into(),
        ));
    }
    let [lo, hi] = record.range;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(fail(format!(
            "range [{lo}, {hi}] is not an interval (low < high)"
        )));
    }
    Ok(Some(record))
}

/// A loaded TorchScript model in evaluation mode.
pub struct Model {
    path: PathBuf,
    module: CModule,
    device: Device,
    output_names: Option<Vec<String>>,
    intervention: Option<Intervention>,
}

impl Model {
    /// Loads a TorchScript file on a device. `output_names` names the elements of a tuple
    /// or list output (a dict output names its own).
    pub fn load(path: &Path, device: Device, output_names: Option<Vec<String>>) -> Result<Model> {
        if !path.is_file() {
            return Err(Error::Model {
                path: path.to_owned(),
                message: "no such file".into(),
            });
        }
        let mut module = CModule::load_on_device(path, device).map_err(|e| Error::Model {
            path: path.to_owned(),
            message: not_torchscript(&e.to_string()),
        })?;
        module.set_eval();
        let intervention = model_intervention(path)?;
        Ok(Model {
            path: path.to_owned(),
            module,
            device,
            output_names,
            intervention,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the model runs on from a layer, when its file says ([`Intervention`]).
    pub fn intervention(&self) -> Option<&Intervention> {
        self.intervention.as_ref()
    }

    /// The intervention record, or an error saying that the model has none and how to give
    /// it one (`for` says what needs it).
    pub fn require_intervention(&self, layer: &str, r#for: &str) -> Result<&Intervention> {
        let Some(record) = &self.intervention else {
            return Err(self.error(format!(
                "{for} needs the model to run on from layer `{layer}`, but its file has no \
                 intervention record ({INTERVENTION_EXTRA_FILE}); {HOW_TO_INTERVENE}"
            )));
        };
        if !record.layers.iter().any(|l| l == layer) {
            return Err(self.error(format!(
                "{for} needs the model to run on from layer `{layer}`, but its method {} offers \
                 only {}",
                record.method,
                record.layers.join(", ")
            )));
        }
        Ok(record)
    }

    /// Runs `forward` on an input batch and returns every named tensor it gives back, with
    /// autograd as the caller set it (under `tch::no_grad_guard` no graph is kept).
    pub fn forward_with_grad(&self, input: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let output = self
            .module
            .forward_is(&[IValue::Tensor(input.to_device(self.device))])
            .map_err(|e| Error::Forward {
                path: self.path.clone(),
                input: input.size(),
                message: first_line(&e.to_string()).to_owned(),
            })?;
        self.name_outputs(output)
    }

    /// The intervention: continues the forward pass from `layer`'s `activations` (N, C, h,
    /// w; on any device) to the output the model's record names (see [`Intervention`]).
    /// Autograd follows the caller's setting, so gradients with respect to `activations`
    /// can be taken through it.
    pub fn forward_from(&self, layer: &str, activations: &Tensor) -> Result<Tensor> {
        let record = self.require_intervention(layer, "running on from a layer")?;
        let output = self
            .module
            .method_is(
                &record.method,
                &[
                    IValue::String(layer.to_owned()),
                    IValue::Tensor(activations.to_device(self.device)),
                ],
            )
            .map_err(|e| {
                self.error(format!(
                    "{}(\"{layer}\", activations of {}) failed: {}",
                    record.method,
                    crate::error::shape(&activations.size()),
                    first_line(&e.to_string())
                ))
            })?;
        match output {
            IValue::Tensor(t) => Ok(t),
            other => Err(self.error(format!(
                "{} returns {}, not a tensor",
                record.method,
                ivalue_kind(&other)
            ))),
        }
    }

    /// Runs `forward` on an input batch and returns every named tensor it gives back.
    pub fn forward(&self, input: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let _guard = tch::no_grad_guard();
        self.forward_with_grad(input)
    }

    /// Runs `forward` once on a blank batch of one image of `input_size`
    /// (`[height, width]`) and returns every tensor it gives back with its shape.
    pub fn output_shapes(&self, input_size: [u32; 2]) -> Result<Vec<(String, Vec<i64>)>> {
        let input = Tensor::zeros(
            [1, 3, i64::from(input_size[0]), i64::from(input_size[1])],
            (tch::Kind::Float, Device::Cpu),
        );
        Ok(self
            .forward(&input)?
            .into_iter()
            .map(|(name, t)| (name, t.size()))
            .collect())
    }

    fn name_outputs(&self, output: IValue) -> Result<Vec<(String, Tensor)>> {
        let positional = |tensors: Vec<Tensor>, what: &str| -> Result<Vec<(String, Tensor)>> {
            let Some(names) = &self.output_names else {
                return Err(self.error(format!(
                    "forward returns a {what} of {}; name them (output_names / --output-names), \
                     or export the model returning a dict",
                    count(tensors.len(), "tensor")
                )));
            };
            if names.len() != tensors.len() {
                return Err(self.error(format!(
                    "forward returns {} but {} given; give one output name (output_names / \
                     --output-names) per tensor, in order",
                    count(tensors.len(), "tensor"),
                    names_given(names.len())
                )));
            }
            Ok(names.iter().cloned().zip(tensors).collect())
        };
        let tensor = |value: IValue, name: &str| -> Result<Tensor> {
            match value {
                IValue::Tensor(t) => Ok(t),
                other => Err(self.error(format!(
                    "output `{name}` is not a tensor ({})",
                    ivalue_kind(&other)
                ))),
            }
        };
        match output {
            IValue::GenericDict(items) => items
                .into_iter()
                .map(|(key, value)| match key {
                    IValue::String(name) => {
                        let t = tensor(value, &name)?;
                        Ok((name, t))
                    }
                    other => Err(self.error(format!(
                        "forward returns a dict whose keys are {}, not strings",
                        ivalue_kind(&other)
                    ))),
                })
                .collect(),
            IValue::Tuple(values) | IValue::GenericList(values) => {
                let tensors = values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| tensor(v, &format!("#{i}")))
                    .collect::<Result<Vec<_>>>()?;
                positional(tensors, "tuple")
            }
            IValue::TensorList(tensors) => positional(tensors, "list"),
            IValue::Tensor(t) => match &self.output_names {
                Some(names) if names.len() == 1 => Ok(vec![(names[0].clone(), t)]),
                Some(names) => Err(self.error(format!(
                    "forward returns 1 tensor but {} given; give one output name (output_names / \
                     --output-names), or none",
                    names_given(names.len())
                ))),
                None => Ok(vec![("output".to_owned(), t)]),
            },
            other => Err(self.error(format!(
                "forward returns {}; expected a dict of tensors, a tuple or a tensor",
                ivalue_kind(&other)
            ))),
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Model {
            path: self.path.clone(),
            message,
        }
    }
}

/// `1 tensor`, `2 tensors`: counts in messages read right for one and for many.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn names_given(n: usize) -> String {
    if n == 1 {
        "1 output name was".to_owned()
    } else {
        format!("{n} output names were")
    }
}

/// The load error of a file that is not TorchScript. A `torch.save` zip (a state_dict, or a
/// pickled model) has no `constants.pkl`, and libtorch calls that a corrupted checkpoint;
/// what the user needs to hear is that the file must be exported.
fn not_torchscript(error: &str) -> String {
    let what = if error.contains("constants.pkl") {
        "it is not TorchScript but a file of torch.save (a state_dict or a pickled model)"
            .to_owned()
    } else {
        format!("cannot load it as TorchScript ({})", first_line(error))
    };
    format!(
        "{what}; export the model as TorchScript: python/export_torchvision.py for torchvision \
         architectures (it takes a state_dict with --weights), or torch.jit.script(model).save(...)"
    )
}

fn ivalue_kind(value: &IValue) -> &'static str {
    match value {
        IValue::None => "None",
        IValue::Tensor(_) => "a tensor",
        IValue::Double(_) => "a float",
        IValue::Int(_) => "an int",
        IValue::Bool(_) => "a bool",
        IValue::Tuple(_) => "a tuple",
        IValue::IntList(_) | IValue::DoubleList(_) | IValue::BoolList(_) => "a list of numbers",
        IValue::String(_) => "a string",
        IValue::StringList(_) => "a list of strings",
        IValue::TensorList(_) => "a list of tensors",
        IValue::GenericList(_) => "a list",
        IValue::GenericDict(_) => "a dict",
        IValue::Object(_) => "an object",
        IValue::Device(_) => "a device",
        _ => "an unsupported value",
    }
}

/// Torch errors carry TorchScript tracebacks and C++ backtraces; users need the line that
/// says what went wrong (`RuntimeError: ...`), or else the first one.
fn first_line(text: &str) -> &str {
    let lines = || text.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .rfind(|l| {
            l.split_once(": ")
                .is_some_and(|(head, _)| head.ends_with("Error") && !head.contains(' '))
        })
        .or_else(|| lines().next())
        .unwrap_or(text)
}
