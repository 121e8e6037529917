"""The layer map: a model's units, bottom to top, and the parameter names each one owns.

Strategies speak only in these terms (embeddings, blocks, pooler, head, LayerNorm, adapters);
nothing outside :mod:`freezebench.model` knows an architecture's raw parameter names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from transformers import PreTrainedModel

from freezebench.errors import ModelError
from freezebench.model.architectures import ArchitectureSpec, architecture_of
from freezebench.model.pooling import pooling_of


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
    # pretrained parameters the head skips under the run's pooling (BERT's pooler under mean):
    # no unit, so no strategy trains them and nothing counts them as computed
    skipped: list[str] = field(default_factory=list)

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
        if has_pooler_unit(self.spec, self.skipped):
            units.append(("pooler", self.pooler))
        units.append(("head", self.head))
        return units


def build_layer_map(model: PreTrainedModel) -> LayerMap:
    """Assign every parameter of ``model`` to exactly one unit of its architecture."""
    architecture, spec = architecture_of(model)
    block_list = model.get_submodule(spec.blocks)
    block_prefixes = [f"{spec.blocks}.{i}." for i in range(len(block_list))]
    layer_map = LayerMap(architecture, spec, [], [[] for _ in block_prefixes], [], [])
    for name, _ in model.named_parameters():
        _assign(layer_map, spec, block_prefixes, name)
    if skips_pooler(model):
        layer_map.pooler, layer_map.skipped = [], layer_map.pooler
    for module_name, module in model.named_modules():
        if _is_norm(module):
            layer_map.layernorm += [f"{module_name}.{p}" for p, _ in module.named_parameters()]
    layer_map.adapters = [n for n in layer_map.all_names() if ".lora_" in n]
    return layer_map


def skips_pooler(model: PreTrainedModel) -> bool:
    """Whether the head skips the pretrained pooler under ``model``'s pooling."""
    _, spec = architecture_of(model)
    return pooling_of(model) == "mean" and spec.mean_head_fn is not None


def has_pooler_unit(spec: ArchitectureSpec, skipped: list[str]) -> bool:
    return bool(spec.pooler) and not skipped


def _is_norm(module: nn.Module) -> bool:
    """LayerNorm, and the RMSNorm of decoders (torch's or a model's own class)."""
    return (isinstance(module, (nn.LayerNorm, nn.RMSNorm))
            or type(module).__name__.endswith("RMSNorm"))


def _assign(layer_map: LayerMap, spec: ArchitectureSpec, block_prefixes: list[str], name: str):
    if any(name.startswith(e + ".") for e in spec.embeddings):
        layer_map.embeddings.append(name)
        return
    for index, prefix in enumerate(block_prefixes):
        if name.startswith(prefix):
            layer_map.blocks[index].append(name)
            return
    if any(name.startswith(p + ".") for p in spec.pooler):
        layer_map.pooler.append(name)
        return
    if any(name.startswith(h + ".") for h in spec.head):
        layer_map.head.append(name)
        return
    raise ModelError(
        f"Parameter '{name}' belongs to no unit of the '{layer_map.architecture}' layer map; "
        "the ArchitectureSpec in freezebench.model.architectures does not describe this model."
    )


def unit_modules(model: nn.Module, layer_map: LayerMap) -> list[tuple[str, list[nn.Module]]]:
    """The modules of each unit (same order as :meth:`LayerMap.units`)."""
    spec = layer_map.spec
    blocks = model.get_submodule(spec.blocks)
    units: list[tuple[str, list[nn.Module]]] = [("embeddings", present(model, spec.embeddings))]
    units += [(f"blocks[{i}]", [block]) for i, block in enumerate(blocks)]
    if has_pooler_unit(spec, layer_map.skipped):
        units.append(("pooler", present(model, spec.pooler)))
    units.append(("head", present(model, spec.head)))
    return units


def present(model: nn.Module, paths: tuple[str, ...]) -> list[nn.Module]:
    """The modules at ``paths`` that ``model`` has (ELECTRA projects its embeddings only where
    their size differs from the hidden size)."""
    modules = []
    for path in paths:
        try:
            modules.append(model.get_submodule(path))
        except AttributeError:
            continue
    return modules


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
