#!/usr/bin/env bash
# bmtrain4j against PyTorch FSDP2, back to back on the same GPUs: the same GPT (default 1.3B:
# 24 layers, d_model 2048, 16 heads, seq 2048), batch, optimizer and precision. Run on the GPU
# machine from the project root after `../shared/gpu/stage examples` and the parts are received
# (see ../shared/gpu/README.md). Usage: bench/gpu-compare.sh [GPU COUNTS...] (default: 2 4)
# Extra arguments for both sides: COMPARE_ARGS="--model 1.3b --micro-batch 8".
set -uo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(2 4)
args=(${COMPARE_ARGS:---model 1.3b --micro-batch 8 --seq 2048})
export BMT_JAVA_OPTS="${BMT_JAVA_OPTS:--Xmx16g}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1
results=()
for n in "${counts[@]}"; do
  echo "=== $n GPU(s): bmtrain4j ==="
  out=$(bash .gpu/gpu.sh torchrun --nproc_per_node="$n" -- io.bmtrain4j.examples.bench.GptThroughput "${args[@]}" 2>&1)
  echo "$out" | grep -v "^\s*$" | grep -iv "warning" | tail -12
  results+=("$(echo "$out" | grep '^RESULT' | tail -1)")
  echo "=== $n GPU(s): PyTorch FSDP2 ==="
  out=$(torchrun --nproc_per_node="$n" bench/fsdp2_gpt.py "${args[@]}" 2>&1)
  echo "$out" | grep -v "^\s*$" | grep -iv "warning" | tail -6
  results+=("$(echo "$out" | grep '^RESULT' | tail -1)")
done
echo "=== summary ==="
printf '%s\n' "${results[@]}"
