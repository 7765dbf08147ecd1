"""Hugging Face tokenizers as the reference for the Java side's tokenization.

  make DIR CORPUS OUT
      Trains a small byte-level BPE tokenizer (as GPT-2 and Llama 3 use) on CORPUS, saves
      DIR/tokenizer.json, and writes to OUT (JSON) the vocabulary size and the ids of every line
      of CORPUS, and of the whole text, encoded without special tokens.
"""
import json
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def make(directory, corpus, out):
    text = open(corpus, encoding="utf-8").read()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(text.splitlines(), trainer=trainer)
    tokenizer.save(f"{directory}/tokenizer.json")
    lines = text.splitlines()
    json.dump({"vocab": tokenizer.get_vocab_size(),
               "lines": [tokenizer.encode(line, add_special_tokens=False).ids for line in lines],
               "whole": tokenizer.encode(text, add_special_tokens=False).ids}, open(out, "w"))


if __name__ == "__main__":
    make(*sys.argv[2:]) if sys.argv[1] == "make" else sys.exit("usage: tokenizer_reference.py make DIR CORPUS OUT")
