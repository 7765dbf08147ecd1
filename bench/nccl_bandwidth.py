"""PyTorch's NCCL process group measured as bench CollectiveBandwidth measures bmtrain4j:
bf16 all_gather_into_tensor / reduce_scatter_tensor, busbw = bytes / time * (n - 1) / n."""
import os
import time

import torch
import torch.distributed as dist


def timed(fn, iterations=20):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iterations


def main():
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    world, rank = dist.get_world_size(), dist.get_rank()
    if rank == 0:
        print(f"{'size':>10} {'all-gather':>16} {'reduce-scatter':>16}   (bf16, {world} GPUs, GB/s bus bandwidth, PyTorch)")
    mib = 1
    while mib <= 1024:
        whole = mib * 1024 * 1024 // 2 // world * world
        full = torch.ones(whole, dtype=torch.bfloat16, device="cuda")
        part = torch.ones(whole // world, dtype=torch.bfloat16, device="cuda")
        ag = timed(lambda: dist.all_gather_into_tensor(full, part))
        rs = timed(lambda: dist.reduce_scatter_tensor(part, full))
        factor = whole * 2.0 * (world - 1) / world / 1e9
        if rank == 0:
            print(f"{mib:7d} MiB {factor / ag:16.1f} {factor / rs:16.1f}", flush=True)
        mib *= 4
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
