#!/usr/bin/env bash
# Where the step time goes at one GPU, bmtrain4j against PyTorch (project root on the GPU machine,
# parts received): forward and backward of the 1.3B GPT as a plain model (the kernels alone) and
# with per-block recompute (our sharded world of one against torch.utils.checkpoint), then, with
# KERNELS=1, every kernel's duration for one step of a 2-block model under Nsight Compute (CSV in
# $OUT). Extra arguments go to both sides: ANATOMY_ARGS="--model 1.3b --micro-batch 8".
set -uo pipefail
cd "$(dirname "$0")/.."
args=(${ANATOMY_ARGS:---model 1.3b --micro-batch 8 --seq 2048})
logs="${OUT:-/tmp}"
export BMT_JAVA_OPTS="${BMT_JAVA_OPTS:--Xmx16g}"
java_side() { bash .gpu/gpu.sh java io.bmtrain4j.examples.bench.StepAnatomy "$@"; }
python_side() { python3 bench/step_anatomy.py "$@"; }
for pair in "plain plain" "sharded checkpoint"; do
  set -- $pair
  java_side --mode "$1" "${args[@]}" > "$logs/anatomy-java-$1.log" 2>&1
  grep '^ANATOMY' "$logs/anatomy-java-$1.log" || tail -20 "$logs/anatomy-java-$1.log"
  python_side --mode "$2" "${args[@]}" > "$logs/anatomy-python-$2.log" 2>&1
  grep '^ANATOMY' "$logs/anatomy-python-$2.log" || tail -20 "$logs/anatomy-python-$2.log"
done
if [ "${KERNELS:-0}" = 1 ]; then
  ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  small=(--layers 2 --steps 1 --warmup 1 "${args[@]}")
  profile() { "$ncu" --csv --print-units base --metrics gpu__time_duration.sum --clock-control none \
    --target-processes all "$@"; }
  profile bash .gpu/gpu.sh java io.bmtrain4j.examples.bench.StepAnatomy --mode plain "${small[@]}" > "$logs/ncu-java-plain.csv" 2> "$logs/ncu-java-plain.err"
  profile python3 bench/step_anatomy.py --mode plain "${small[@]}" > "$logs/ncu-python-plain.csv" 2> "$logs/ncu-python-plain.err"
  wc -l "$logs"/ncu-*.csv
fi
