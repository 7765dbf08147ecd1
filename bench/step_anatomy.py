"""PyTorch side of io.bmtrain4j.examples.bench.StepAnatomy: forward (with the loss) and backward
times of the same GPT on one GPU, without the optimizer, synchronised after each phase.

--mode plain: every activation kept (no checkpointing), to compare libtorch's kernels as the two
builds run them; --mode checkpoint: torch.utils.checkpoint (non-reentrant) per block, what
FSDP2's benchmark does and what our sharded world-of-one recompute does.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from fsdp2_gpt import PRESETS, Gpt, attention_backend


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="plain", choices=["plain", "checkpoint"])
    p.add_argument("--model", default="1.3b", choices=sorted(PRESETS))
    p.add_argument("--layers", type=int, default=0, help="blocks, overriding the preset's (0: the preset's)")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()

    torch.manual_seed(0)
    d, heads, layers, d_ff = PRESETS[a.model]
    layers = a.layers or layers
    with torch.device("cuda"):
        model = Gpt(a.vocab, a.seq, d, heads, layers, d_ff).to(torch.bfloat16)
    for block in model.layers:
        block.checkpointed = a.mode == "checkpoint"

    def now():
        torch.cuda.synchronize()
        return time.perf_counter()

    fwd = bwd = 0.0
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            torch.cuda.reset_peak_memory_stats()
        tokens = torch.randint(a.vocab, (a.micro_batch, a.seq + 1), device="cuda")
        t0 = now()
        logits = model(tokens[:, :-1]).float()
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), tokens[:, 1:].reshape(-1))
        t1 = now()
        loss.backward()
        t2 = now()
        for q in model.parameters():
            q.grad = None
        if i >= a.warmup:
            fwd += (t1 - t0) * 1e3
            bwd += (t2 - t1) * 1e3
    fwd, bwd = fwd / a.steps, bwd / a.steps
    print(f"ANATOMY impl=pytorch mode={a.mode} model={a.model} layers={layers} micro_batch={a.micro_batch}"
          f" attention={attention_backend(a.micro_batch, a.seq, d, heads)} forward_ms={fwd:.1f} backward_ms={bwd:.1f} step_ms={fwd + bwd:.1f}"
          f" peak_allocated_gib={torch.cuda.max_memory_allocated() / 2**30:.2f}", flush=True)


if __name__ == "__main__":
    main()
