"""Which hidden states the classification head reads: the pooling of a run.

``cls`` reads each example's first token, ``last`` its last real token (decoders), ``mean`` the
mean of the last hidden states over its real tokens. ``auto`` is the architecture's own head,
except ``mean`` for a sentence-transformers checkpoint whose pooling config says mean (it was
trained to be read that way, and its first token through a pooler it never trained is not).

A pooling other than the architecture's own is kept on the model's config
(``freezebench_pooling``), so everything that maps or runs the model (the layer map, the staged
forward, a saved delta loaded back) reads it from the model itself. ModernBERT's own head already
pools either way: ``cls`` and ``mean`` become its config's ``classifier_pooling``.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import PretrainedConfig, PreTrainedModel

from freezebench.config import Pooling
from freezebench.errors import ConfigError
from freezebench.model.architectures import ArchitectureSpec, architecture_of

ATTRIBUTE = "freezebench_pooling"
_ST_MODULES = "modules.json"
_ST_POOLING_TYPE = "sentence_transformers.models.Pooling"


@dataclass(frozen=True)
class PoolingChoice:
    """The pooling a run uses (``cls``, ``mean`` or ``last``) and why."""

    mode: str
    own_head: bool   # the architecture's own head reads the model this way
    reason: str


def own_pooling(spec: ArchitectureSpec, config: PretrainedConfig) -> str:
    """How the architecture's own head reads the last hidden states."""
    if not spec.staged and hasattr(config, "classifier_pooling"):  # ModernBERT
        return config.classifier_pooling
    return spec.pooling


def pooling_of(model: PreTrainedModel) -> str:
    """The pooling ``model`` runs with (:func:`apply_pooling`), else its own head's."""
    _, spec = architecture_of(model)
    return getattr(model.config, ATTRIBUTE, None) or own_pooling(spec, model.config)


def resolve_pooling(requested: Pooling, model_name: str, model: PreTrainedModel, *,
                    revision: str | None = None) -> PoolingChoice:
    """What ``requested`` means for ``model`` (loaded from ``model_name``); an error names a
    pooling the architecture cannot do."""
    model_type, spec = architecture_of(model)
    own = own_pooling(spec, model.config)
    if requested == "auto":
        mean = sentence_transformers_mean(model_name, revision=revision)
        if mean and _can_pool(spec, "mean"):
            return PoolingChoice("mean", own == "mean" or not spec.staged,
                                 "auto: the sentence-transformers pooling config says mean")
        return PoolingChoice(own, True, "auto: the architecture's own head")
    if not _can_pool(spec, requested):
        raise ConfigError(_cannot_pool(model_type, spec, requested))
    # ModernBERT's own head reads either way (its config's classifier_pooling)
    return PoolingChoice(requested, requested == own or not spec.staged, "asked for")


def apply_pooling(model: PreTrainedModel, mode: str) -> None:
    """Make ``model`` pool by ``mode`` (a resolved one: ``cls``, ``mean`` or ``last``);
    ModernBERT through its own config."""
    _, spec = architecture_of(model)
    if not spec.staged:
        model.config.classifier_pooling = mode
    elif mode != own_pooling(spec, model.config):
        setattr(model.config, ATTRIBUTE, mode)


def _can_pool(spec: ArchitectureSpec, mode: str) -> bool:
    if not spec.staged:  # ModernBERT's head pools by its classifier_pooling: cls or mean
        return mode in ("cls", "mean")
    if spec.causal:  # a decoder's first token has seen nothing of the text after it
        return mode in ("last", "mean")
    return mode in ("cls", "mean")


def _cannot_pool(model_type: str, spec: ArchitectureSpec, mode: str) -> str:
    if spec.causal and mode == "cls":
        why = ("it is a causal decoder: its first token attends to nothing after it, so it "
               "knows nothing of the text")
    elif mode == "last":
        why = "'last' is for causal decoders, whose last real token has read the whole text"
    else:
        why = "its classification head does not read the hidden states that way"
    usable = [m for m in ("cls", "mean", "last") if _can_pool(spec, m)]
    return (f"Pooling '{mode}' does not fit the '{model_type}' architecture: {why}. Use "
            f"--pooling {' or '.join(['auto', *usable])}.")


@functools.cache  # read once a process: a sweep estimates every run's work, then runs them
def sentence_transformers_mean(model_name: str, *, revision: str | None = None) -> bool:
    """Whether ``model_name`` (a folder or a hub id) is a sentence-transformers checkpoint whose
    pooling module averages the tokens (``pooling_mode_mean_tokens``). A hub id whose files
    cannot be read (offline, not cached) counts as not, with a printed note."""
    folder = Path(model_name)
    if folder.is_dir():
        return _pooling_says_mean(folder / _ST_MODULES, lambda path: folder / path)
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        def fetch(path: str) -> Path:
            return Path(hf_hub_download(model_name, path, revision=revision))

        return _pooling_says_mean(fetch(_ST_MODULES), fetch)
    except LocalEntryNotFoundError as exc:  # offline, and not in the cache
        _note_unreadable(model_name, exc)
        return False
    except EntryNotFoundError:  # the repository has no such file: not sentence-transformers
        return False
    except (OSError, ValueError) as exc:  # no such repository, a private one, ...
        _note_unreadable(model_name, exc)
        return False


def _note_unreadable(model_name: str, exc: Exception) -> None:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    print(f"Note: pooling auto could not read the sentence-transformers pooling config of "
          f"'{model_name}' ({message}); using the architecture's own head.", file=sys.stderr)


def _pooling_says_mean(modules_path: Path, locate) -> bool:
    if not Path(modules_path).is_file():
        return False
    modules = json.loads(Path(modules_path).read_text())
    pooling = next((m for m in modules if m.get("type") == _ST_POOLING_TYPE), None)
    if pooling is None:
        return False
    config_path = locate(f"{pooling['path']}/config.json")
    if not Path(config_path).is_file():
        return False
    return bool(json.loads(Path(config_path).read_text()).get("pooling_mode_mean_tokens"))
