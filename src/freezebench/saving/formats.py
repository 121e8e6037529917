"""The two forms of a saved model, and loading either back.

``pretrained`` (the default): the whole model as ``save_pretrained`` writes it, a stock
``transformers`` model with the dataset's label names, so ``pipeline("text-classification",
model=folder)`` and ``AutoModelForSequenceClassification`` load it. It is rebuilt from the base
checkpoint and the tensors the run trained, so nothing of the run's own machinery (its staged
forward, numpy dropout, weights kept in bf16 for autocast) is saved. A LoRA run is saved merged,
and its adapter also as a PEFT folder in ``adapter/`` (the head in ``modules_to_save``).

``delta``: only the tensors the run trained (``trained.safetensors``), what one shared backbone
needs per task; :func:`load_finetuned` adds them to the base model. A run whose head read another
pooling than the architecture's own (``mean`` on BERT, ...) can only be saved this way: the stock
model class cannot pool so, and :func:`load_finetuned` wraps it in a
:class:`~freezebench.model.pooled.PooledClassifier` that does.

Both hold ``freezebench.json`` (base model, strategy, pooling, label names) and the tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from freezebench.config import RunConfig
from freezebench.errors import ConfigError, ModelError
from freezebench.model.architectures import architecture_of
from freezebench.model.layer_map import build_layer_map
from freezebench.model.loading import load_model, load_tokenizer, with_lora
from freezebench.model.pooled import PooledClassifier
from freezebench.model.pooling import ATTRIBUTE, PoolingChoice, apply_pooling
from freezebench.strategies import plan_for

META = "freezebench.json"
WEIGHTS = "trained.safetensors"
ADAPTER = "adapter"
# the names earlier versions wrote, and what they are now
_FORMERLY = {"whole": "pretrained", "trained-only": "delta"}


def check_saveable(config: RunConfig, pooling: PoolingChoice) -> None:
    """Before training: a run that saves ``pretrained`` must pool as the stock model does."""
    if not (config.save_model or config.push_to_hub) or config.save_format != "pretrained":
        return
    if not pooling.own_head:
        raise ConfigError(
            f"This run's head reads the '{pooling.mode}' pooling ({pooling.reason}), which the "
            f"stock {config.model!r} classification model cannot reproduce, so it cannot be "
            "saved as a whole 'pretrained' model. Use --save-format delta (load it with "
            "freezebench.load_finetuned), or the --pooling of the architecture's own head "
            "(`freezebench ls architectures`).")


def trained_tensors(model: PreTrainedModel, trained: set[str]) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters named in ``trained``."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if n in trained}


def save_delta(folder: Path, tensors: dict[str, torch.Tensor], config: RunConfig) -> None:
    """Only the trained tensors."""
    save_file(tensors, folder / WEIGHTS, metadata={"base_model": config.model})


def save_pretrained(folder: Path, tensors: dict[str, torch.Tensor], config: RunConfig, *,
                    label_names: list[str], lora: dict | None, base_model: str,
                    pad_token_id: int | None = None, pooling: str | None = None) -> None:
    """The whole model, rebuilt as a stock one; a LoRA run merged, its adapter in ``adapter/``.

    ``base_model`` is what the adapter's config names as its base (a Hub id where one is known);
    ``pad_token_id`` the one the run padded with (a decoder's classifier finds each example's
    last token by it, and its base config may have none); ``pooling`` the run's, one the stock
    model does (ModernBERT's classifier_pooling).
    """
    model = _base(config, label_names)
    if pooling is not None:
        apply_pooling(model, pooling)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    adapters = {n: t for n, t in tensors.items() if ".lora_" in n}
    _load_trained(model, {n: t for n, t in tensors.items() if n not in adapters})
    if lora is None:
        model.save_pretrained(folder)
        return
    from peft import LoraConfig, get_peft_model

    # the head (and anything else trained beside the adapters) is saved whole with the adapter
    head = architecture_of(model)[1].head
    to_save = sorted({next((h for h in head if n.startswith(h + ".")), n.rpartition(".")[0])
                      for n in tensors if n not in adapters})
    peft_model = get_peft_model(model, LoraConfig(**lora, task_type="SEQ_CLS",
                                                  modules_to_save=to_save))
    _load_trained(peft_model.base_model.model, adapters)  # injected under the same names
    peft_model.peft_config["default"].base_model_name_or_path = base_model
    peft_model.save_pretrained(folder / ADAPTER)
    peft_model.merge_and_unload().save_pretrained(folder)


def write_meta(folder: Path, config: RunConfig, *, run_id: str, label_names: list[str],
               pooling: str | None = None) -> None:
    meta = {"run_id": run_id, "model": config.model, "revision": config.revision,
            "strategy": config.strategy, "strategy_params": config.strategy_params,
            "label_names": label_names, "seed": config.seed, "format": config.save_format,
            "pooling": pooling}
    (folder / META).write_text(json.dumps(meta, indent=2))


def load_finetuned(folder: str | Path
                   ) -> tuple[PreTrainedModel | PooledClassifier, PreTrainedTokenizerBase]:
    """Load a model saved by ``--save-model``, in either form: ``(model, tokenizer)``.

    A LoRA run saved as ``delta`` comes back with its adapters in place (not merged); one whose
    head read another pooling than the architecture's own, wrapped in a
    :class:`~freezebench.model.pooled.PooledClassifier` that pools so.
    """
    folder = Path(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        raise ModelError(f"'{folder}' holds no {META}; it was not saved by freezebench.")
    meta = json.loads(meta_path.read_text())
    if _FORMERLY.get(meta["format"], meta["format"]) == "pretrained":
        model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
        return model, AutoTokenizer.from_pretrained(folder)
    model = load_model(meta["model"], num_labels=len(meta["label_names"]),
                       label_names=meta["label_names"], seed=meta["seed"],
                       revision=meta.get("revision"))
    if meta.get("pooling"):  # saved before pooling was a setting: the own head
        apply_pooling(model, meta["pooling"])
    plan = plan_for(meta["strategy"], meta["strategy_params"], build_layer_map(model))
    if plan.lora is not None:
        model = with_lora(model, plan.lora)
    _load_trained(model, load_file(folder / WEIGHTS))
    if getattr(model.config, ATTRIBUTE, None):
        return PooledClassifier(model), load_tokenizer(str(folder))
    return model, load_tokenizer(str(folder))


def _base(config: RunConfig, label_names: list[str]) -> PreTrainedModel:
    """The run's base model with a head for its labels (its values are replaced by the trained
    ones)."""
    return load_model(config.model, num_labels=len(label_names), label_names=label_names,
                      seed=config.seed, revision=config.revision,
                      trust_remote_code=config.trust_remote_code)


def _load_trained(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Put ``tensors`` into ``model`` by name; every one must find its parameter."""
    missing = set(tensors) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ModelError(f"Saved tensors do not fit the base model: {sorted(missing)[:3]}")
    model.load_state_dict(tensors, strict=False)
