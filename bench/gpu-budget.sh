#!/usr/bin/env bash
# What blocks keep for backward, bmtrain4j against PyTorch FSDP2's hand-tuned settings, back to
# back on the same GPUs with the same GPT, batch, optimizer and precision:
# - bmtrain4j (one run, variants alternating in rounds): every block recomputing (with early
#   stop), every block selective (attention kept), every block kept, and the activation budget
#   (default 90% of the GPU) choosing per block after one measured step;
# - FSDP2, one run per setting: activation checkpointing on every block (ac1), every 2nd (ac2),
#   every 3rd (ac3), none (ac0), and op-level selective checkpointing keeping attention (sac1).
# Run on the GPU machine from the project root after `../shared/gpu/stage examples` and the parts
# are received (see ../shared/gpu/README.md).
# Usage: bench/gpu-budget.sh GPUS [ARGS for both sides] (default: --model 1.3b --micro-batch 8 --seq 2048)
# FSDP2_SETTINGS="1 2 3 0 sac" picks the reference's settings; BMT_ARGS adds bmtrain4j-only options.
set -uo pipefail
cd "$(dirname "$0")/.."
default_gpus=1
source bench/gpu-args.sh "$@"
results=()
echo "=== $n GPU(s): bmtrain4j ==="
timeout 420 bash .gpu/gpu.sh torchrun --nproc_per_node="$n" -- io.bmtrain4j.examples.bench.GptThroughput "${args[@]}" \
  --activation-rounds --no-full-recompute-rounds --collective-waits ${BMT_ARGS:-} > "$logs/bmt-budget-$tag.log" 2>&1
grep -E "^(GPT|prefetch|no-prefetch|selective|keep-all|budget|collective|all-gathers|RESULT) " "$logs/bmt-budget-$tag.log" \
  || grep -v "^\s*$" "$logs/bmt-budget-$tag.log" | tail -20 | cut -c1-300
while read -r line; do results+=("$line"); done < <(grep '^RESULT' "$logs/bmt-budget-$tag.log")
for s in ${FSDP2_SETTINGS:-1 2 3 0 sac}; do
  if [ "$s" = sac ]; then ref=(--sac); else ref=(--ac-every "$s"); fi
  echo "=== $n GPU(s): PyTorch FSDP2 ${ref[*]} ==="
  timeout 300 torchrun --nproc_per_node="$n" bench/fsdp2_gpt.py "${args[@]}" "${ref[@]}" > "$logs/fsdp2-$s-$tag.log" 2>&1
  grep -E "^(fsdp2|RESULT)" "$logs/fsdp2-$s-$tag.log" || grep -v "^\s*$" "$logs/fsdp2-$s-$tag.log" | grep -iv warn | tail -5 | cut -c1-300
  results+=("$(grep '^RESULT' "$logs/fsdp2-$s-$tag.log" | tail -1)")
done
echo "=== summary ==="
printf '%s\n' "${results[@]}"
