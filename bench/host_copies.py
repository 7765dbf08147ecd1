"""What offloaded optimizer state costs on a GPU host, in plain PyTorch (no bmtrain4j): libtorch's
fused AdamW on the CPU over 0.8B fp32 parameters, and the copies between the GPU's bf16 shards and
host buffers, with the cast done by copy_ across devices (through a pageable temporary) or after a
same-dtype copy to pinned memory. The figures behind HostStatePlacement's [Note: copies in the
shard's dtype]. Run on the GPU machine: python bench/host_copies.py (about 18 GB of host memory)."""
import time

import torch

PARAMETERS, TENSORS = 806_952_960, 16  # OptimizerBenchmark's 0.8B, in 16 slices
SIZE = PARAMETERS // TENSORS


def timed(name, action, device_sync=False):
    if device_sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    action()
    if device_sync:
        torch.cuda.synchronize()
    print(f"{name}: {1e3 * (time.perf_counter() - start):.0f} ms", flush=True)


def adamw(params, grads, exp_avgs, exp_avg_sqs, steps):
    torch._foreach_add_(steps, 1.0)
    torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=1e-4, beta1=0.9, beta2=0.999,
                        weight_decay=0.1, eps=1e-8, amsgrad=False, maximize=False)


def main():
    torch.set_num_threads(16)
    params = [torch.randn(SIZE) for _ in range(TENSORS)]
    grads = [torch.randn(SIZE) for _ in range(TENSORS)]
    exp_avgs = [torch.zeros(SIZE) for _ in range(TENSORS)]
    exp_avg_sqs = [torch.zeros(SIZE) for _ in range(TENSORS)]
    steps = [torch.tensor(0.0) for _ in range(TENSORS)]
    for threads in (16, 16, 16, 8, 4):
        torch.set_num_threads(threads)
        timed(f"cpu fused adamw 0.8B, {threads} threads", lambda: adamw(params, grads, exp_avgs, exp_avg_sqs, steps))
    torch.set_num_threads(16)
    timed("cpu copy 3.2 GB", lambda: [a.copy_(b) for a, b in zip(exp_avgs, params)])

    on_gpu = [torch.randn(SIZE, device="cuda", dtype=torch.bfloat16) for _ in range(TENSORS)]
    pinned_fp32 = [torch.empty(SIZE, pin_memory=True) for _ in range(TENSORS)]
    pinned_bf16 = [torch.empty(SIZE, pin_memory=True, dtype=torch.bfloat16) for _ in range(TENSORS)]
    for name, destinations, sources in (("d2h bf16->fp32 pinned", pinned_fp32, on_gpu),
                                        ("d2h bf16->bf16 pinned", pinned_bf16, on_gpu),
                                        ("h2d fp32 pinned->bf16", on_gpu, pinned_fp32),
                                        ("h2d bf16 pinned->bf16", on_gpu, pinned_bf16)):
        for _ in range(2):
            timed(name, lambda: [a.copy_(b) for a, b in zip(destinations, sources)], device_sync=True)
    timed("cpu cast bf16->fp32 0.8B", lambda: [a.copy_(b) for a, b in zip(pinned_fp32, pinned_bf16)])
    timed("cpu cast fp32->bf16 0.8B", lambda: [a.copy_(b) for a, b in zip(pinned_bf16, pinned_fp32)])


if __name__ == "__main__":
    main()
