#!/usr/bin/env bash
# bmtrain4j against PyTorch FSDP2, back to back on the same GPUs: the same GPT (default 1.3B:
# 24 layers, d_model 2048, 16 heads, seq 2048), batch, optimizer and precision. Run on the GPU
# machine from the project root after `../shared/gpu/stage examples` and the parts are received
# (see ../shared/gpu/README.md). Usage: bench/gpu-compare.sh [GPU COUNTS...] (default: 2 4)
# Extra arguments for both sides: COMPARE_ARGS="--model 1.3b --micro-batch 8 --seq 2048"; for
# bmtrain4j's only: BMT_ARGS (default "--collective-waits": how long compute waited on
# all-gathers and reduce-scatters, per variant).
# Full logs go to $OUT (the device's return folder) or /tmp.
set -uo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(2 4)
args=(${COMPARE_ARGS:---model 1.3b --micro-batch 8 --seq 2048})
logs="${OUT:-/tmp}"
export BMT_JAVA_OPTS="${BMT_JAVA_OPTS:--Xmx16g}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1
echo "arguments: ${args[*]}"
results=()
show() { # the figures, or the end of the log when the run produced none
  if grep -q '^RESULT' "$1"; then grep -E "^(GPT|FSDP2|prefetch|no-prefetch|no-early-stop|fsdp2|all-gathers|collective|phases) " "$1"; else echo "FAILED, log $1:"; grep -v "^\s*$" "$1" | grep -iv warn | tail -40 | cut -c1-300; fi
  results+=("$(grep '^RESULT' "$1" | tail -1)")
}
for n in "${counts[@]}"; do
  tag="${args[1]:-model}-$n"
  echo "=== $n GPU(s): bmtrain4j ==="
  bash .gpu/gpu.sh torchrun --nproc_per_node="$n" -- io.bmtrain4j.examples.bench.GptThroughput "${args[@]}" ${BMT_ARGS:---collective-waits} > "$logs/bmt-$tag.log" 2>&1
  show "$logs/bmt-$tag.log"
  echo "=== $n GPU(s): PyTorch FSDP2 ==="
  torchrun --nproc_per_node="$n" bench/fsdp2_gpt.py "${args[@]}" > "$logs/fsdp2-$tag.log" 2>&1
  show "$logs/fsdp2-$tag.log"
done
echo "=== summary ==="
printf '%s\n' "${results[@]}"
