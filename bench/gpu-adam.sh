#!/usr/bin/env bash
# Adam's mixed-precision kernel (AdamOptions.mixedPrecisionKernel) on GPUs, in one go:
# - with CHECKS=1 (default): AdamKernelCheck (the kernel and the offloaded Adam against libtorch's
#   fused AdamW, bf16 and fp16 gradients) and OptimizerBenchmark (step time of every optimizer on the same 0.8B bf16 shards);
# - the GPT with the activation budget, bmtrain4j with the kernel, then with libtorch's fused AdamW
#   (--libtorch-adam), phases timed, then PyTorch FSDP2 with the settings in FSDP2_SETTINGS
#   (default "0 1": no activation checkpointing, then every block). ADAM_KERNELS="kernel" skips
#   the run with libtorch's fused AdamW.
# Run on the GPU machine from the project root after `../shared/gpu/stage examples` and the parts
# are received (see ../shared/gpu/README.md).
# Usage: bench/gpu-adam.sh GPUS [ARGS for both sides] (default: --model 1.3b --micro-batch 8 --seq 2048)
set -uo pipefail
cd "$(dirname "$0")/.."
default_gpus=1
source bench/gpu-args.sh "$@"
run() { bash .gpu/gpu.sh torchrun --nproc_per_node="$n" -- "$@" 2>&1; }
if [ "${CHECKS:-1}" = 1 ]; then
  echo "=== checks ==="
  run io.bmtrain4j.examples.AdamKernelCheck | grep -iE "Adam (kernel|offload) check|exception|error|unavailable" | head -5
  run io.bmtrain4j.examples.AdamKernelCheck --dtype fp16 | grep -iE "Adam (kernel|offload) check|exception|error|unavailable" | head -5
  echo "=== optimizer step, 0.8B bf16 parameters over $n GPU(s) ==="
  run io.bmtrain4j.examples.OptimizerBenchmark --device cuda --dtype bf16 --d-model 4096 --layers 4 --steps 5 --rounds 3 \
    | grep -iE "parameters on this rank|ms/step|exception|unavailable" | head -8
fi
results=()
for adam in ${ADAM_KERNELS:-kernel libtorch}; do
  extra=(); [ "$adam" = libtorch ] && extra=(--libtorch-adam)
  echo "=== $n GPU(s): bmtrain4j, Adam: $adam ==="
  log="$logs/bmt-adam-$adam-$tag.log"
  timeout 400 bash .gpu/gpu.sh torchrun --nproc_per_node="$n" -- io.bmtrain4j.examples.bench.GptThroughput "${args[@]}" \
    --activation-rounds --no-full-recompute-rounds --no-prefetch-rounds --variants prefetch,budget --phases \
    "${extra[@]}" ${BMT_ARGS:-} > "$log" 2>&1
  grep -E "^(GPT|Adam:|prefetch|budget|phases|RESULT) |unavailable" "$log" || grep -v "^\s*$" "$log" | tail -20 | cut -c1-300
  while read -r line; do results+=("$adam: $line"); done < <(grep '^RESULT' "$log")
done
for s in ${FSDP2_SETTINGS:-0 1}; do
  echo "=== $n GPU(s): PyTorch FSDP2 --ac-every $s ==="
  timeout 300 torchrun --nproc_per_node="$n" bench/fsdp2_gpt.py "${args[@]}" --ac-every "$s" > "$logs/fsdp2-$s-$tag.log" 2>&1
  grep -E "^(fsdp2|RESULT)" "$logs/fsdp2-$s-$tag.log" || grep -v "^\s*$" "$logs/fsdp2-$s-$tag.log" | grep -iv warn | tail -5 | cut -c1-300
  results+=("$(grep '^RESULT' "$logs/fsdp2-$s-$tag.log" | tail -1)")
done
echo "=== summary ==="
printf '%s\n' "${results[@]}"
