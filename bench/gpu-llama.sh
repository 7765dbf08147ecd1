#!/usr/bin/env bash
# The LLaMA example against PyTorch FSDP2 on transformers' LlamaForCausalLM, back to back on the
# same GPUs, same shape, batch, optimizer and precision: tokens/s, MFU, peak memory and build
# time; for bmtrain4j also the chunked loss against the whole logits and with the activation
# budget, for FSDP2 also without activation checkpointing, and (first model only) how
# long a sharded checkpoint blocks training, inline and in the background. Run on the GPU machine
# from the project root after `../shared/gpu/stage examples` and the parts are received.
# Usage: bench/gpu-llama.sh GPUS "MODEL ARGS" ["MODEL ARGS" ...]
# LLAMA_SAVE=0 skips the checkpoint timing.
#   e.g. bench/gpu-llama.sh 1 "--model llama3.2-1b --micro-batch 4" "--model llama3-8b --layers 16 --micro-batch 1"
set -uo pipefail
cd "$(dirname "$0")/.."
n="$1"
shift
logs="${OUT:-/tmp}"
export BMT_JAVA_OPTS="${BMT_JAVA_OPTS:--Xmx16g}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1
results=()
first=1
for workload in "$@"; do
  read -r -a args <<< "$workload"
  tag="$(echo "$workload" | tr -c 'a-z0-9.' '_')-$n"
  save=()
  if [ "$first" = 1 ] && [ "${LLAMA_SAVE:-1}" = 1 ]; then save=(--save-dir /tmp/llama-ckpt); fi
  first=0
  echo "=== $n GPU(s), $workload: bmtrain4j ==="
  timeout 300 bash .gpu/gpu.sh torchrun --nproc_per_node="$n" -- io.bmtrain4j.examples.bench.LlamaThroughput "${args[@]}" \
    --full-logits --budget-rounds "${save[@]}" > "$logs/bmt-llama-$tag.log" 2>&1
  grep -E "^(LLaMA|chunked-loss|full-logits|budget|budget-logits|checkpoint:|RESULT)[ :]" "$logs/bmt-llama-$tag.log" || tail -20 "$logs/bmt-llama-$tag.log"
  results+=("$(grep '^RESULT' "$logs/bmt-llama-$tag.log" | tail -1)")
  rm -rf /tmp/llama-ckpt
  echo "=== $n GPU(s), $workload: PyTorch FSDP2 ==="
  timeout 300 torchrun --nproc_per_node="$n" bench/fsdp2_llama.py "${args[@]}" > "$logs/fsdp2-llama-$tag.log" 2>&1
  grep -E "^(FSDP2|fsdp2|RESULT) " "$logs/fsdp2-llama-$tag.log" || grep -v "^\s*$" "$logs/fsdp2-llama-$tag.log" | grep -iv warn | tail -15
  results+=("$(grep '^RESULT' "$logs/fsdp2-llama-$tag.log" | tail -1)")
  echo "=== $n GPU(s), $workload: PyTorch FSDP2 without activation checkpointing ==="
  timeout 300 torchrun --nproc_per_node="$n" bench/fsdp2_llama.py "${args[@]}" --no-ac > "$logs/fsdp2-noac-llama-$tag.log" 2>&1
  grep -E "^(FSDP2|fsdp2|RESULT) " "$logs/fsdp2-noac-llama-$tag.log" || grep -v "^\s*$" "$logs/fsdp2-noac-llama-$tag.log" | grep -iv warn | tail -5
  results+=("$(grep '^RESULT' "$logs/fsdp2-noac-llama-$tag.log" | tail -1)")
done
echo "=== summary ==="
printf '%s\n' "${results[@]}"
