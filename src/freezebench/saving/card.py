"""The model card (``README.md``) of a saved model: the Hub's metadata header and the run's facts.

The header (``huggingface_hub.ModelCardData``) names the base model and dataset where they are Hub
repositories, the test metrics as ``model-index`` results, the library and pipeline that load the
folder; the body gives the strategy, what trained, the training time and the freezebench run id.
A local model or dataset is named by its folder's name only: a card may be pushed, a machine's
paths do not belong in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from freezebench.model.loading import OFFLINE_MODEL_HUB_ID, offline_model_path
from freezebench.record import RunRecord

CardKind = Literal["pretrained", "adapter", "delta"]
# record metric -> (Hub metric type, its config, the name shown)
_METRICS = {"accuracy": ("accuracy", None, "Accuracy"), "f1": ("f1", None, "F1"),
            "f1_macro": ("f1", "macro", "F1 (macro)"),
            "precision": ("precision", None, "Precision"), "recall": ("recall", None, "Recall"),
            # a regression's (its classification metrics are null, and left out)
            "pearson": ("pearsonr", None, "Pearson r"), "spearman": ("spearmanr", None,
                                                                     "Spearman ρ"),
            "mse": ("mse", None, "MSE")}


def hub_name(source: str) -> str | None:
    """The Hub repository ``source`` stands for: itself unless it is a local path, the Hub id of
    the offline MiniLM copy, ``None`` for any other local folder or file."""
    offline = offline_model_path()
    if offline and Path(source).resolve() == Path(offline).resolve():
        return OFFLINE_MODEL_HUB_ID
    if Path(source).exists() or source.startswith(("/", ".", "~")):
        return None
    return source


def model_card(record: RunRecord, *, kind: CardKind, where: str,
               merged: bool = False) -> ModelCard:
    """The card of ``record``'s saved model; ``where``: the folder or Hub id the usage example
    loads from; ``merged``: a LoRA run's whole model, its adapter beside it in ``adapter/``."""
    assert record.metrics and record.params and record.efficiency and record.data  # completed
    config = record.config
    base, dataset = hub_name(config["model"]), hub_name(record.data.source)
    test = record.metrics.test
    dataset_type = dataset or Path(record.data.source).name
    results = [EvalResult(task_type="text-classification", task_name="Text Classification",
                          dataset_type=dataset_type, dataset_name=dataset_type,
                          dataset_split="test", metric_type=kind_, metric_config=setting,
                          metric_name=name, metric_value=round(getattr(test, key), 6))
               for key, (kind_, setting, name) in _METRICS.items()
               if getattr(test, key) is not None]
    data = ModelCardData(
        base_model=base, datasets=[dataset] if dataset else None,
        library_name="peft" if kind == "adapter" else "transformers",
        pipeline_tag="text-classification", model_name=record.id,
        metrics=sorted({result.metric_type for result in results}), eval_results=results,
        tags=["freezebench", config["strategy"], "text-classification",
              *(["lora"] if kind == "adapter" else [])])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(record, kind, where, merged)}")


def _body(record: RunRecord, kind: CardKind, where: str, merged: bool) -> str:
    config, params, test = record.config, record.params, record.metrics.test
    params_text = ", ".join(f"{k}={v}" for k, v in config["strategy_params"].items()) or "defaults"
    facts = [("Base model", _named(config["model"])), ("Dataset", _named(record.data.source)),
             ("Labels", ", ".join(record.data.label_names)),
             ("Strategy", f"`{config['strategy']}` ({params_text})"),
             ("Trainable parameters", f"{params.ever_trainable:,} of {params.total:,} "
                                      f"({100 * params.ever_trainable / params.total:.2f} %)"),
             ("Learning rate, epochs, seed", f"{config['learning_rate']:g}, "
                                             f"{config['num_train_epochs']}, {config['seed']}"),
             ("Training time", f"{record.efficiency.train_seconds:.1f} s"
                               + (f" on {record.env.device_name}" if record.env else "")),
             ("freezebench run", f"`{record.id}`")]
    metrics = [(name, f"{getattr(test, key):.4f}") for key, (_, _, name) in _METRICS.items()
               if getattr(test, key) is not None]
    usage = _USAGE[kind].format(where=where, labels=record.data.num_labels)
    lines = [f"# {record.id}", "",
             f"A text classifier fine-tuned with freezebench under the `{record.strategy_label}` "
             "strategy. " + _WHAT[kind] + (_MERGED if merged else ""), "", "| | |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in facts), "",
             f"## Test metrics ({test.samples} examples)", "", "| metric | value |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in [*metrics, ("Loss", f"{test.loss:.4f}")]), "",
             "## Use it", "", "```python", usage.strip(), "```", ""]
    return "\n".join(lines)


def _named(source: str) -> str:
    hub = hub_name(source)
    return f"`{hub}`" if hub else f"`{Path(source).name}` (a local copy)"


_WHAT = {
    "pretrained": "This folder holds the whole model, its tokenizer and its label names.",
    "adapter": "This folder holds the LoRA adapter and the trained classification head, for PEFT.",
    "delta": "This folder holds only the tensors the run trained; freezebench adds them to the "
             "base model.",
}
_MERGED = (" The LoRA adapters are merged into the model; the adapter alone, with the "
           "classification head, is in `adapter/` for PEFT.")
_USAGE = {
    "pretrained": """
from transformers import pipeline

classifier = pipeline("text-classification", model="{where}")
print(classifier("a delight from start to finish"))
""",
    "adapter": """
from peft import PeftConfig, PeftModel
from transformers import AutoModelForSequenceClassification

config = PeftConfig.from_pretrained("{where}", subfolder="adapter")
base = AutoModelForSequenceClassification.from_pretrained(config.base_model_name_or_path,
                                                          num_labels={labels})
model = PeftModel.from_pretrained(base, "{where}", subfolder="adapter")
""",
    "delta": """
from freezebench.saving import load_finetuned

model, tokenizer = load_finetuned("{where}")
""",
}
