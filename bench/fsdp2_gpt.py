"""PyTorch FSDP2 reference for bench/gpu-compare.sh: the example GPT of bmtrain4j
(examples/.../gpt: token + position embeddings, pre-norm blocks of causal SDPA attention and a
GELU MLP without biases, LayerNorm with bias, final norm, LM head tied to the token embedding),
trained the way GptThroughput trains it:

- fully_shard on every block and on the root (ZeRO-3: reshard after forward);
- activation checkpointing per block (torch.utils.checkpoint, non-reentrant), or on every k-th
  block (--ac-every K; 0: none), or op-level selective checkpointing that saves attention's output
  and recomputes the rest (--sac, as torchtitan's "op" policy);
- MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16): bf16 compute and collectives, fp32
  sharded parameters in the fused AdamW (bmtrain4j keeps bf16 parameters and fp32 masters);
- the same batch, sequence length, optimizer (lr 1e-4, weight decay 0.1), random tokens, and the
  loss on fp32 logits.

Run under torchrun, one process per GPU. Prints the same figures as GptThroughput and a RESULT line.
"""
import argparse
import math
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from functools import partial

from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

# What --sac saves instead of recomputing: every fused attention kernel SDPA may pick.
SAC_SAVED = {
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
}


def sac_policy(ctx, op, *args, **kwargs):
    return CheckpointPolicy.MUST_SAVE if op in SAC_SAVED else CheckpointPolicy.PREFER_RECOMPUTE

PRESETS = {  # d_model, heads, layers, d_ff, as GptConfig.preset
    "125m": (768, 12, 12, 3072),
    "350m": (1024, 16, 24, 4096),
    "1.3b": (2048, 16, 24, 8192),
    "6.7b": (4096, 32, 32, 16384),
}


class Block(nn.Module):
    def __init__(self, d, heads, d_ff, layers):
        super().__init__()
        std, residual_std = 0.02, 0.02 / math.sqrt(2.0 * layers)
        self.heads = heads
        self.wqkv = nn.Parameter(torch.randn(d, 3 * d) * std)
        self.wo = nn.Parameter(torch.randn(d, d) * residual_std)
        self.w1 = nn.Parameter(torch.randn(d, d_ff) * std)
        self.w2 = nn.Parameter(torch.randn(d_ff, d) * residual_std)
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.checkpointed = True  # bench/step_anatomy.py turns it off for the plain model
        self.selective = False  # --sac: keep attention's output, recompute the rest

    def _forward(self, x):
        b, t, d = x.shape
        qkv = (self.ln1(x) @ self.wqkv).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
        x = x + attn.transpose(1, 2).reshape(b, t, d) @ self.wo
        return x + F.gelu(self.ln2(x) @ self.w1) @ self.w2

    def forward(self, x):
        if not self.checkpointed:
            return self._forward(x)
        if self.selective:
            return checkpoint(self._forward, x, use_reentrant=False,
                              context_fn=partial(create_selective_checkpoint_contexts, sac_policy))
        return checkpoint(self._forward, x, use_reentrant=False)


class Gpt(nn.Module):
    def __init__(self, vocab, seq, d, heads, layers, d_ff):
        super().__init__()
        self.token_embedding = nn.Parameter(torch.randn(vocab, d) * 0.02)
        self.position_embedding = nn.Parameter(torch.randn(seq, d) * 0.01)
        self.layers = nn.ModuleList(Block(d, heads, d_ff, layers) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d)

    def forward(self, tokens):
        x = F.embedding(tokens, self.token_embedding) + self.position_embedding[: tokens.shape[1]]
        for block in self.layers:
            x = block(x)
        return self.final_norm(x) @ self.token_embedding.t()


def attention_backend(batch, seq, d, heads):
    """The SDPA kernel PyTorch picks for Block's query/key/value layout (as TransformerBlock.attentionBackend)."""
    qkv = torch.empty(batch, seq, 3, heads, d // heads, device="cuda", dtype=torch.bfloat16).permute(2, 0, 3, 1, 4)
    names = ["math", "flash", "efficient", "cudnn", "overrideable"]
    return names[torch._fused_sdp_choice(qkv[0], qkv[1], qkv[2], is_causal=True)]


def flops_per_token(n_params, seq, d, layers):
    """As GptThroughput.flopsPerToken: 6 per multiplying parameter (not the position table) + attention."""
    return 6 * (n_params - seq * d) + 12.0 * layers * d * seq


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="1.3b", choices=sorted(PRESETS))
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=790.0)
    p.add_argument("--phases", action="store_true", help="time forward, backward and optimizer separately (synchronised)")
    p.add_argument("--ac-every", type=int, default=1, help="checkpoint every K-th block (1: all, the default; 0: none)")
    p.add_argument("--sac", action="store_true", help="op-level selective checkpointing on the checkpointed blocks: save attention")
    p.add_argument("--trace-memory", action="store_true", help="print peak memory after every timed round")
    a = p.parse_args()

    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    world, rank = dist.get_world_size(), dist.get_rank()
    torch.manual_seed(0)
    d, heads, layers, d_ff = PRESETS[a.model]
    t0 = time.time()
    with torch.device("cuda"):
        model = Gpt(a.vocab, a.seq, d, heads, layers, d_ff)
    n_params = sum(p.numel() for p in model.parameters())
    for i, block in enumerate(model.layers):
        block.checkpointed = a.ac_every > 0 and i % a.ac_every == 0
        block.selective = a.sac
    ac = ("sac" if a.sac else "ac") + str(a.ac_every)
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16)
    for block in model.layers:
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    if rank == 0:
        print(f"FSDP2 GPT {a.model}: {n_params:,} parameters, bf16, {world} GPU(s), micro-batch {a.micro_batch} x {a.seq}"
              f" tokens per GPU, {attention_backend(a.micro_batch, a.seq, d, heads)} attention; built in {time.time() - t0:.1f} s", flush=True)

    phase_ms, phase_steps, phase_peak = [0.0, 0.0, 0.0], [0], [0, 0, 0]

    def peak(i):  # with --phases: the allocator's peak in phase i, then a new window
        if a.phases:
            if i >= 0:
                phase_peak[i] = max(phase_peak[i], torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()

    def mark():
        if not a.phases:
            return 0.0
        torch.cuda.synchronize()
        return time.perf_counter()

    def run(count):
        loss = None
        for _ in range(count):
            tokens = torch.randint(a.vocab, (a.micro_batch, a.seq + 1), device="cuda")
            opt.zero_grad(set_to_none=True)
            t0 = mark()
            peak(-1)
            logits = model(tokens[:, :-1]).float()
            loss = F.cross_entropy(logits.reshape(-1, a.vocab), tokens[:, 1:].reshape(-1))
            t1 = mark()
            peak(0)
            loss.backward()
            t2 = mark()
            peak(1)
            opt.step()
            t3 = mark()
            peak(2)
            if a.phases:
                for i, d in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                    phase_ms[i] += d * 1e3
                phase_steps[0] += 1
        return loss.item()

    run(a.warmup)
    phase_ms[:], phase_steps[0], phase_peak[:] = [0.0, 0.0, 0.0], 0, [0, 0, 0]  # phases count the timed rounds only
    best, loss = float("inf"), float("nan")
    for _ in range(a.rounds):
        run(1)
        torch.cuda.reset_peak_memory_stats()
        retries_before = torch.cuda.memory_stats().get("num_alloc_retries", 0)  # counted over the timed steps
        dist.barrier()
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = run(a.steps)
        best = min(best, (time.perf_counter() - start) / a.steps)
        if a.trace_memory and rank == 0:
            print(f"round done: peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)
    tokens = a.micro_batch * a.seq / best
    mfu = tokens * flops_per_token(n_params, a.seq, d, layers) / (a.peak_tflops * 1e12)
    alloc = max(torch.cuda.max_memory_allocated(), *phase_peak) / 2**30
    reserved = torch.cuda.max_memory_reserved() / 2**30
    retries = torch.cuda.memory_stats().get("num_alloc_retries", 0) - retries_before  # the last round's, as GptThroughput's
    if rank == 0 and a.phases and phase_steps[0]:
        n = phase_steps[0]
        print(f"phases (synchronised, mean of {n} steps): forward + loss {phase_ms[0] / n:.1f} ms, backward + reduction"
              f" {phase_ms[1] / n:.1f} ms, optimizer {phase_ms[2] / n:.1f} ms; peak allocated in each:"
              f" {' / '.join(f'{b / 2**30:.2f}' for b in phase_peak)} GiB", flush=True)
    if rank == 0:
        print(f"{'fsdp2-' + ac:<12} {best * 1e3:8.1f} ms/step  {tokens:10,.0f} tokens/s/GPU  MFU {100 * mfu:5.1f}%"
              f"  peak allocated {alloc:.2f} GiB, reserved {reserved:.2f} GiB"
              + (f", {retries} allocator retries" if retries else ""), flush=True)
        print(f"RESULT impl=fsdp2-{ac} model={a.model} gpus={world} tokens_per_s_per_gpu={tokens:.0f} mfu={mfu:.4f}"
              f" peak_allocated_gib={alloc:.2f} peak_reserved_gib={reserved:.2f} step_ms={best * 1e3:.1f}"
              f" loss={loss:.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
