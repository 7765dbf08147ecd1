#!/usr/bin/env bash
# The GPU checks of issue 7, in one go on a 4-GPU machine (project root, parts received):
# parity of ZeRO-3 on 2 and 4 GPUs against a plain 1-GPU model (fp32 and bf16), Adam's
# mixed-precision kernel against libtorch's fused AdamW, the NCCL watchdog against a vanished
# peer, the example training on 1, 2 and 4 GPUs, and collective bus bandwidth of bmtrain4j next to
# PyTorch's NCCL process group.
set -uo pipefail
cd "$(dirname "$0")/.."
export BMT_JAVA_OPTS="${BMT_JAVA_OPTS:--Xmx8g}"
run() { bash .gpu/gpu.sh torchrun --nproc_per_node="$1" -- "${@:2}" 2>&1 | grep -v "^\s*$" | grep -iv "warning"; }
for n in 2 4; do
  run "$n" io.bmtrain4j.examples.GpuParityCheck | grep "GPU parity"
  run "$n" io.bmtrain4j.examples.GpuParityCheck --dtype bf16 --d-model 1024 --layers 6 | grep "GPU parity"
done
run 1 io.bmtrain4j.examples.GpuParityCheck --dropout 0.1 | grep "GPU parity"
run 1 io.bmtrain4j.examples.AdamKernelCheck | grep -E "Adam (kernel|offload) check"
run 1 io.bmtrain4j.examples.AdamKernelCheck --dtype fp16 | grep -E "Adam (kernel|offload) check"
echo "=== dead peer (2 GPUs, timeout 10 s) ==="
start=$(date +%s)
run 2 io.bmtrain4j.examples.DeadPeerCheck --timeout-s 10 | grep -E "vanishes|did not complete|FAILED|asynchronous|exitcode" | head -5
echo "dead-peer run ended after $(( $(date +%s) - start )) s"
for n in 1 2 4; do
  echo "=== example training, $n GPU(s) ==="
  run "$n" io.bmtrain4j.examples.Train --device cuda --dtype bf16 --steps 150 --checkpoint-dir /tmp/ckpt-$n \
    | grep -E "GPT |loss .* -> |sample|tokens as in" | head -6
done
echo "=== collective bandwidth, 4 GPUs: bmtrain4j, then PyTorch ==="
run 4 io.bmtrain4j.examples.bench.CollectiveBandwidth
torchrun --nproc_per_node=4 bench/nccl_bandwidth.py 2>&1 | grep -iv warning
