"""Hugging Face's own LlamaForCausalLM as the reference for the Java LLaMA example's tests.

  make DIR EXPECTED --dtype {float32,bfloat16} [--max-shard-size 40KB] [--llama3-rope]
      A tiny LLaMA with grouped-query attention, saved by save_pretrained into DIR; EXPECTED
      (safetensors) gets fixed tokens and the logits transformers computes for them in fp32
      (eager attention) from the saved weights.
  gradients DIR OUT
      The gradients of the mean cross-entropy of predicting each token + 1 (mod vocab) from the
      tokens in DIR's EXPECTED file, under Hugging Face names, into OUT (safetensors).
  check DIR JAVA
      Loads DIR (written by the Java side) with from_pretrained and compares, against JAVA
      (safetensors the Java side wrote: the tokens, its logits, and its whole weights under
      Hugging Face names), the weights key by key and the logits.
"""
import argparse
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_config(llama3_rope, vocab=96, tied=False):
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16} if llama3_rope else None
    return LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                       rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=rope, tie_word_embeddings=tied,
                       attention_bias=False, mlp_bias=False)


def logits_of(model, tokens):
    with torch.no_grad():
        return model(input_ids=tokens).logits.float().contiguous()


def make(args):
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(args.llama3_rope, args.vocab, args.tied))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # norms start at one: move them so a swapped norm shows
                p.add_(0.1 * torch.randn_like(p))
    model = model.to(getattr(torch, args.dtype))
    model.save_pretrained(args.dir, max_shard_size=args.max_shard_size, safe_serialization=True)
    reference = LlamaForCausalLM.from_pretrained(args.dir, dtype=torch.float32, attn_implementation="eager")
    tokens = (torch.arange(2 * 12).view(2, 12) * 7 + 3) % 96
    save_file({"tokens": tokens.contiguous(), "logits": logits_of(reference, tokens)}, args.expected)


def gradients(args):
    model = LlamaForCausalLM.from_pretrained(args.dir, dtype=torch.float32, attn_implementation="eager")
    tokens = load_file(args.expected)["tokens"]
    logits = model(input_ids=tokens).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), ((tokens + 1) % logits.size(-1)).reshape(-1))
    loss.backward()
    out = {name: p.grad.contiguous() for name, p in model.named_parameters()}
    out["loss"] = loss.detach().reshape(1)
    save_file(out, args.out)


def loads(args):
    """DIR (saved by the Java side after fine-tuning ORIGINAL) loads in transformers, tokenizer too."""
    from transformers import AutoTokenizer
    model = LlamaForCausalLM.from_pretrained(args.dir, dtype=torch.float32)
    original = LlamaForCausalLM.from_pretrained(args.original, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.dir)
    ids = tokenizer("the quick brown fox", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    if not torch.isfinite(logits).all() or not changed:
        sys.exit(f"loaded, but finite logits: {bool(torch.isfinite(logits).all())}, weights changed: {len(changed)}")
    print(f"OK loads: {len(changed)} of {len(model.state_dict())} weights changed by fine-tuning, logits {tuple(logits.shape)}")


def check(args):
    java = load_file(args.java)
    model = LlamaForCausalLM.from_pretrained(args.dir, dtype=torch.float32, attn_implementation="eager")
    # A tied model lists its head under lm_head.weight too: the same tensor as the embedding.
    state = {k: v for k, v in model.state_dict().items()
             if not (model.config.tie_word_embeddings and k == "lm_head.weight")}
    failures = []
    for key, value in java.items():
        if key in ("tokens", "logits"):
            continue
        if key not in state:
            failures.append(f"transformers has no {key}")
        elif not torch.equal(state[key].float(), value.float()):
            failures.append(f"{key} differs by {(state[key].float() - value.float()).abs().max().item()}")
    weights = [k for k in java if k not in ("tokens", "logits")]
    if len(weights) != len(state):
        failures.append(f"{len(weights)} weights from Java, {len(state)} in transformers' model")
    diff = (logits_of(model, java["tokens"]) - java["logits"]).abs().max().item()
    if diff > 1e-5:
        failures.append(f"logits differ by {diff}")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"OK {len(weights)} weights equal, logits within {diff:.2e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("expected")
    m.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    m.add_argument("--max-shard-size", default="40KB")
    m.add_argument("--llama3-rope", action="store_true")
    m.add_argument("--vocab", type=int, default=96)
    m.add_argument("--tied", action="store_true", help="tie the LM head to the embedding (Llama 3.2 1B and 3B do)")
    v = sub.add_parser("loads")
    v.add_argument("dir")
    v.add_argument("original")
    g = sub.add_parser("gradients")
    g.add_argument("dir")
    g.add_argument("expected")
    g.add_argument("out")
    c = sub.add_parser("check")
    c.add_argument("dir")
    c.add_argument("java")
    a = parser.parse_args()
    {"make": make, "gradients": gradients, "check": check, "loads": loads}[a.command](a)
