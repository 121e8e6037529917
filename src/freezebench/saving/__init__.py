"""Keep a fine-tuned model, load it back, push it to the Hub.

``--save-model`` writes ``<output_dir>/models/<run-id>/`` with the tokenizer, a model card
(``README.md``) and, by default, the whole model, which ``transformers`` loads on its own::

    from transformers import pipeline
    classifier = pipeline("text-classification", model="results/models/<run-id>")

A LoRA run is saved merged, and its adapter also in ``adapter/`` for ``PeftModel.from_pretrained``.
``--save-format delta`` keeps only the trained tensors; :func:`load_finetuned` loads either form.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from freezebench.config import RunConfig
from freezebench.model.pooling import pooling_of
from freezebench.record import RunRecord, safe_name
from freezebench.saving.card import hub_name, model_card
from freezebench.saving.formats import (
    ADAPTER,
    check_saveable,
    load_finetuned,
    save_delta,
    save_pretrained,
    trained_tensors,
    write_meta,
)
from freezebench.saving.hub import hub_repo, push_folder

__all__ = ["check_saveable", "load_finetuned", "model_folder", "hub_repo", "push_folder",
           "save_finetuned"]


def model_folder(output_dir: str | Path, run_id: str) -> Path:
    """Where ``--save-model`` keeps a run's model."""
    return Path(output_dir) / "models" / safe_name(run_id, 200)


def save_finetuned(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   config: RunConfig, *, record: RunRecord, trained: set[str],
                   lora: dict | None = None) -> Path:
    """Save the model ``record`` measured in the form ``config.save_format`` names, with its
    tokenizer and model card; return the folder. ``trained``: the names of the parameters the
    run trained; ``lora``: the LoRA config the adapters were injected with, if any."""
    folder = model_folder(config.output_dir, record.id)
    folder.mkdir(parents=True, exist_ok=True)
    label_names = record.data.label_names
    tensors = trained_tensors(model, trained)
    tokenizer.save_pretrained(folder)
    where = hub_repo(config, record.id) if config.push_to_hub else _shown(folder)
    if config.save_format == "delta":
        save_delta(folder, tensors, config)
    else:
        save_pretrained(folder, tensors, config, label_names=label_names, lora=lora,
                        base_model=hub_name(config.model) or config.model,
                        pad_token_id=model.config.pad_token_id, pooling=pooling_of(model))
    with_adapter = lora is not None and config.save_format == "pretrained"
    if with_adapter:
        model_card(record, kind="adapter", where=where).save(folder / ADAPTER / "README.md")
    write_meta(folder, config, run_id=record.id, label_names=label_names,
               pooling=pooling_of(model))
    model_card(record, kind=config.save_format, where=where,
               merged=with_adapter).save(folder / "README.md")
    return folder


def _shown(folder: Path) -> str:
    """The folder as a card shows it: as given when relative, never a machine's absolute path."""
    return str(folder) if not folder.is_absolute() else f"path/to/{folder.name}"
