#!/usr/bin/env bash
# Peak memory of the quantile, segment and score stages as the dataset grows 4×.
#
#   bench/memory-flatness.sh [SMALL] [FACTOR]     (default 500 images, ×4)
#
# Generates two synthetic datasets (224×224), extracts ResNet-18 layer2–layer4 (seeded
# random weights) once per dataset, then runs each later stage alone under /usr/bin/time
# and prints its maximum resident set size (the median of five runs). Everything goes to
# a scratch cache under .netdissect/bench; rerunning reuses the extractions.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
small=${1:-500}
factor=${2:-4}
large=$((small * factor))
scripts/cargo build --release --workspace --quiet
bin=target/release
work=.netdissect/bench
cache=$work/cache
mkdir -p "$work"
model=$work/resnet18-seed0.pt
[ -f "$model" ] || .venv/bin/python python/export_torchvision.py resnet18 --layers layer2,layer3,layer4 --seed 0 --out "$model" >/dev/null

peak() { # runs a command; sets $mib to its max RSS in MiB and $out to its stdout
  local log
  log=$(mktemp)
  out=$(/usr/bin/time -f '%M' -o "$log" "$@")
  mib=$(( $(tail -1 "$log") / 1024 ))
  rm -f "$log"
}

median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

# Each stage's peak is the median of five runs: a run's peak varies by several MiB with
# what the allocator happens to keep (heaptrack: the heap itself grows only by the
# dataset's index, about 230 bytes a row).
printf '%-8s %8s %12s   %s\n' images stage "peak MiB" "(five runs)"
for n in "$small" "$large"; do
  data=$work/synth-224-$n
  [ -d "$data" ] || "$bin/netdissect" synth "$data" --images "$n" --size 224 --seed 7 >/dev/null
  activations=$("$bin/nd-extract" --dataset "$data" --model "$model" --layers layer2,layer3,layer4 --cache "$cache" --no-progress 2>/dev/null)
  qs=() ss=() cs=()
  for _ in 1 2 3 4 5; do
    # Fresh artifacts each time: the quantile, segment and score keys depend on `top`.
    top=0.00$RANDOM$RANDOM
    peak "$bin/nd-quantile" --activations "$activations" --top "$top"
    qs+=("$mib") thresholds=$out
    peak "$bin/nd-segment" --dataset "$data" --activations "$activations" --thresholds "$thresholds"
    ss+=("$mib") masks=$out
    peak "$bin/nd-score" --dataset "$data" --masks "$masks"
    cs+=("$mib")
  done
  printf '%-8s %8s %12s   %s\n' "$n" quantile "$(median "${qs[@]}")" "${qs[*]}" \
    "$n" segment "$(median "${ss[@]}")" "${ss[*]}" "$n" score "$(median "${cs[@]}")" "${cs[*]}"
done
