#!/usr/bin/env bash
# How much of the communication overlap hides, on 2+ GPUs: GptThroughput with prefetch on and
# off (alternating in rounds) and --collective-waits, which times on the compute stream how long
# it waited on all-gathers and reduce-scatters. Three settings, each its own run:
# - one NCCL stream for every collective (the default);
# - reduce-scatters on a stream and communicator of their own (--separate-reduce-stream);
# - NCCL limited to 8 CTAs per collective (NCCL_MAX_CTAS=8): less of the GPU taken from compute
#   while a hidden collective runs, each collective slower.
# Run on the GPU machine from the project root after `../shared/gpu/stage examples` and the parts
# are received (see ../shared/gpu/README.md).
# Usage: bench/gpu-overlap.sh GPUS [ARGS] (default: --model 1.3b --micro-batch 8 --seq 2048)
set -uo pipefail
cd "$(dirname "$0")/.."
default_gpus=2
source bench/gpu-args.sh "$@"
run() { # NAME [EXTRA ARGS...]; an environment given before the call reaches the JVMs
  local name="$1"; shift
  echo "=== $n GPU(s): $name ==="
  timeout 300 bash .gpu/gpu.sh torchrun --nproc_per_node="$n" -- io.bmtrain4j.examples.bench.GptThroughput \
    "${args[@]}" --no-full-recompute-rounds --collective-waits "$@" > "$logs/overlap-$name-$tag.log" 2>&1
  grep -E "^(GPT|prefetch|no-prefetch|all-gathers|collective) " "$logs/overlap-$name-$tag.log" \
    || grep -v "^\s*$" "$logs/overlap-$name-$tag.log" | grep -iv warn | tail -20 | cut -c1-300
}
run one-stream
run separate-reduce-stream --separate-reduce-stream
NCCL_MAX_CTAS=8 run nccl-max-ctas-8
