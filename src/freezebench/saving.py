"""Keep a fine-tuned model, and load it back.

``full`` and ``embeddings`` runs save the whole model with ``save_pretrained`` (safetensors). Every
other strategy saves only the tensors it trained (``trained.safetensors``) plus ``freezebench.json``
naming the base model and strategy: what one shared backbone needs per task. Load either with::

    from freezebench.saving import load_finetuned
    model, tokenizer = load_finetuned("results/models/<run-id>")
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from freezebench.config import RunConfig
from freezebench.errors import ModelError
from freezebench.model.layer_map import build_layer_map
from freezebench.model.loading import load_model, load_tokenizer, with_lora
from freezebench.record import safe_name
from freezebench.strategies import plan_for

_WHOLE = ("full", "embeddings")
META = "freezebench.json"
WEIGHTS = "trained.safetensors"


def save_finetuned(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   config: RunConfig, *, run_id: str, label_names: list[str],
                   trained: set[str]) -> Path:
    """Save the fine-tuned model under ``<output_dir>/models/<run_id>``: whole (full,
    embeddings), or only the ``trained`` tensors; return the folder."""
    folder = Path(config.output_dir) / "models" / safe_name(run_id, 200)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    meta = {"run_id": run_id, "model": config.model, "revision": config.revision,
            "strategy": config.strategy, "strategy_params": config.strategy_params,
            "label_names": label_names, "seed": config.seed}
    if config.strategy in _WHOLE:
        model.save_pretrained(folder, safe_serialization=True)
        meta["format"] = "whole"
    else:
        tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
                   if n in trained}
        save_file(tensors, folder / WEIGHTS, metadata={"base_model": config.model})
        meta["format"] = "trained-only"
    (folder / META).write_text(json.dumps(meta, indent=2))
    return folder


def load_finetuned(folder: str | Path):
    """Load a model saved by ``--save-model``: the whole model, or base model + trained tensors."""
    folder = Path(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        raise ModelError(f"'{folder}' holds no {META}; it was not saved by freezebench.")
    meta = json.loads(meta_path.read_text())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if meta["format"] == "whole":
        model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
        return model, tokenizer
    model = load_model(meta["model"], num_labels=len(meta["label_names"]),
                       label_names=meta["label_names"], seed=meta["seed"],
                       revision=meta.get("revision"))
    plan = plan_for(meta["strategy"], meta["strategy_params"], build_layer_map(model))
    if plan.lora is not None:
        model = with_lora(model, plan.lora)
    trained = load_file(folder / WEIGHTS)
    missing = set(trained) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ModelError(f"Saved tensors do not fit the base model: {sorted(missing)[:3]}")
    model.load_state_dict(trained, strict=False)
    return model, load_tokenizer(str(folder))
