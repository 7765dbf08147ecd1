"""PyTorch FSDP2 reference for bench/gpu-llama.sh: Hugging Face transformers' LlamaForCausalLM
with the shape of a LlamaThroughput preset, trained the way LlamaThroughput trains the Java
example:

- built on the meta device, fully_shard on every decoder layer and on the root (ZeRO-3), then
  materialised on the GPU and initialised there (the build time counts all of it);
- activation checkpointing per layer (transformers' gradient checkpointing, non-reentrant);
- MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16): bf16 compute, fp32 sharded
  parameters in the fused AdamW (bmtrain4j keeps bf16 parameters and fp32 masters);
- the same batch, sequence length, optimizer (lr 1e-4, weight decay 0.1), random tokens, and the
  loss on fp32 logits.

Run under torchrun, one process per GPU (--device cpu with gloo: a smoke test of the script).
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import LlamaConfig, LlamaForCausalLM

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
PRESETS = {  # as LlamaConfig.preset: vocab, d_model, layers, heads, kv heads, d_ff, rope theta, rope scaling
    "tiny": (256, 64, 2, 4, 2, 172, 10000.0, None),
    "llama3.2-1b": (128256, 2048, 16, 32, 8, 8192, 500000.0, LLAMA3_ROPE),
    "llama3.2-3b": (128256, 3072, 28, 24, 8, 8192, 500000.0, LLAMA3_ROPE),
    "llama2-7b": (32000, 4096, 32, 32, 32, 11008, 10000.0, None),
    "llama3-8b": (128256, 4096, 32, 32, 8, 14336, 500000.0, None),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="llama3.2-1b", choices=sorted(PRESETS))
    p.add_argument("--layers", type=int, default=0)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-ac", action="store_true", help="no activation checkpointing (FSDP2's fastest hand-tuned setting when it fits)")
    p.add_argument("--peak-tflops", type=float, default=790.0)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = p.parse_args()

    cuda = a.device == "cuda"
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    world, rank = dist.get_world_size(), dist.get_rank()
    torch.manual_seed(0)
    vocab, d, layers, heads, kv, d_ff, theta, scaling = PRESETS[a.model]
    layers = a.layers or layers
    config = LlamaConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv, intermediate_size=d_ff, rope_theta=theta, rope_scaling=scaling,
                         max_position_embeddings=max(a.seq, 8192), rms_norm_eps=1e-5,
                         tie_word_embeddings=a.model.startswith("llama3.2"),  # as the published 1B and 3B
                         attn_implementation="sdpa")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    t0 = time.time()
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16)
    for layer in model.model.layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    model.to_empty(device=device)
    with torch.no_grad():
        model.init_weights()  # normal(0, 0.02) and ones, drawn on the device into the local shards
        rotary = model.model.rotary_emb  # buffers computed at construction: recompute them off the meta device
        fresh = type(rotary)(rotary.config)
        rotary.inv_freq.copy_(fresh.inv_freq)
        rotary.original_inv_freq.copy_(fresh.original_inv_freq)
    if not a.no_ac:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    sync()
    build = time.time() - t0
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=cuda)
    if rank == 0:
        print(f"FSDP2 LLaMA {a.model}: {n_params:,} parameters, bf16, {world} GPU(s), micro-batch {a.micro_batch} x {a.seq}"
              f" tokens per GPU; built in {build:.1f} s", flush=True)

    def run(count):
        loss = None
        for _ in range(count):
            tokens = torch.randint(vocab, (a.micro_batch, a.seq + 1), device=device)
            opt.zero_grad(set_to_none=True)
            logits = model(input_ids=tokens[:, :-1]).logits.float()
            loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
            del logits
            loss.backward()
            opt.step()
        return loss.item()

    run(a.warmup)
    best, loss = float("inf"), float("nan")
    for _ in range(a.rounds):
        run(1)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            retries_before = torch.cuda.memory_stats().get("num_alloc_retries", 0)  # counted over the timed steps
        dist.barrier()
        sync()
        start = time.perf_counter()
        loss = run(a.steps)
        sync()
        best = min(best, (time.perf_counter() - start) / a.steps)
    tokens = a.micro_batch * a.seq / best
    flops = 6.0 * (n_params - vocab * d) + 12.0 * layers * d * a.seq
    mfu = tokens * flops / (a.peak_tflops * 1e12)
    alloc = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0
    retries = torch.cuda.memory_stats().get("num_alloc_retries", 0) - retries_before if cuda else 0  # the last round's
    if rank == 0:
        print(f"{'fsdp2':<12} {best * 1e3:8.1f} ms/step  {tokens:10,.0f} tokens/s/GPU  MFU {100 * mfu:5.1f}%"
              f"  peak allocated {alloc:.2f} GiB, reserved {reserved:.2f} GiB"
              + (f", {retries} allocator retries" if retries else ""), flush=True)
        print(f"RESULT impl=fsdp2{'-noac' if a.no_ac else ''} model={a.model} gpus={world} tokens_per_s_per_gpu={tokens:.0f} mfu={mfu:.4f}"
              f" peak_allocated_gib={alloc:.2f} peak_reserved_gib={reserved:.2f} step_ms={best * 1e3:.1f}"
              f" build_s={build:.1f} loss={loss:.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
