"""Training FLOPs: the matrix products of a run, counted per weight matrix with freezing, the
frozen-prefix cache and the cut last block in mind (the Trainer's ``total_flos`` ignores freezing).

Matrix products are what is counted, the arithmetic that dominates a transformer and what
``torch.utils.flop_counter.FlopCounterMode`` counts; elementwise work (biases, LayerNorm,
activations, softmax, dropout) and embedding lookups are left out. A weight matrix with ``n``
inputs and ``m`` outputs costs, per position it acts on, ``2 n m`` forward and in the backward

* ``2 n m`` for the gradient of its input, needed when that input depends on a trainable
  parameter: in every unit above the lowest trainable unit, and in that unit itself for every
  matrix above the ones that read the unit's input (a block's query, key and value projections,
  the first matrix of the pooler or head; a LoRA adapter's B reads its A's output). Reaching the
  lower weights of the lowest trainable unit needs this backward through its own activations;
* ``2 n m`` for the gradient of its weight, when that weight trains (a trained bias or LayerNorm
  parameter costs no matrix product).

A block's self-attention is two products over the (query, key) pairs of each sequence, ``2 d``
FLOPs per pair each for width ``d``; its backward computes the gradients of the queries, keys and
values that depend on a trainable parameter, and of the attention weights when the queries or keys
do: up to four products more.

Per real (non-padding) token, a block's matrices act once per token and its attention takes the
``s**2`` pairs of a sequence of ``s`` tokens; the pooler and head act once per sequence. The last
block computed at the first tokens (``StagedForward.last_block_at``) runs its key and value
projections on every token, its other matrices once per sequence, and its attention over ``s``
pairs per sequence (one query). The frozen prefix runs forward only, without autograd (or once,
into the cache); nothing below it gets a gradient, so the lowest trainable unit that counts is
the lowest one above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import nn
from transformers.pytorch_utils import Conv1D

from freezebench.model.layer_map import LayerMap

# which gradients a unit's backward computes: none (no autograd, or nothing in or below it
# trains), its own (the lowest trainable unit: nothing below it needs one), all (above it)
Gradients = Literal["none", "own", "all"]


@dataclass(frozen=True)
class Matrix:
    """One weight matrix of a unit (a linear layer's), as the count sees it."""

    size: int                # multiply-adds per position: inputs x outputs
    trains: bool             # its weight gets a gradient
    reads_trainable: bool    # its input depends on a trainable parameter of its own unit
    every_token: bool        # in the cut last block it still acts on every token (keys, values)


@dataclass(frozen=True)
class UnitCost:
    """One unit of the model (bottom to top) for FLOP counting."""

    name: str
    matrices: tuple[Matrix, ...]
    trainable: bool          # a parameter of it trains (a bias or LayerNorm one counts)
    per_token: bool          # blocks act per token; pooler and head per sequence
    # blocks: whether its queries, keys and values depend on a trainable parameter of the block
    attention: tuple[bool, bool, bool] | None = None
    cut: bool = False        # the last block, computed at the first tokens


@dataclass(frozen=True)
class Positions:
    """What a pass computes over: ``tokens`` for per-token matrices, ``sequences`` for the
    per-sequence ones, ``pairs`` of (query, key) for a whole block's attention and ``first_pairs``
    for the cut last block's."""

    tokens: float
    sequences: float
    pairs: float
    first_pairs: float

    @classmethod
    def of_lengths(cls, lengths: Sequence[int] | np.ndarray) -> Positions:
        """The real tokens of sequences of ``lengths``, each attending within itself."""
        lengths = np.asarray(lengths, dtype=np.float64)
        total = float(lengths.sum())
        return cls(total, float(len(lengths)), float((lengths ** 2).sum()), total)


def unit_costs(model: nn.Module, layer_map: LayerMap, ever_trainable: set[str],
               first_token_only: bool) -> list[UnitCost]:
    """The units of ``model`` for :func:`train_flops`; ``first_token_only``: the last block runs
    at the first tokens alone (its key and value projections still act on every token)."""
    last_block = f"blocks[{layer_map.num_blocks - 1}]"
    inputs = tuple(f".{name}." for name in layer_map.spec.input_projections())
    return [_unit_cost(model, unit, names, ever_trainable,
                       inputs if unit.startswith("blocks") else None,
                       cut=first_token_only and unit == last_block)
            for unit, names in layer_map.units()]


def _unit_cost(model: nn.Module, unit: str, names: list[str], trainable: set[str],
               inputs: tuple[str, ...] | None, cut: bool) -> UnitCost:
    """One unit's matrices, in the order they run (their parameters' order in these models).

    ``inputs``: name fragments of a block's query, key and value projections, the matrices that
    read its input; ``None`` for the other units, whose first matrix reads it."""
    matrices: list[Matrix] = []
    seen_trainable = False
    for name in names:
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if name.endswith(".weight") and isinstance(module, (nn.Linear, Conv1D)):
            if ".lora_B." in name:  # reads what its adapter's A (just before it) computes
                before = matrices[-1]
                reads = before.trains or before.reads_trainable
            else:
                reads_input = any(p in name for p in inputs) if inputs else not matrices
                reads = seen_trainable and not reads_input
            every_token = bool(inputs) and any(p in name for p in inputs[1:])  # keys, values
            matrices.append(Matrix(module.weight.numel(), name in trainable, reads, every_token))
        seen_trainable |= name in trainable
    attention = None
    if inputs:
        flags = [any(p in n for n in names if n in trainable) for p in inputs]
        # one fused matrix (GPT-2's c_attn, ModernBERT's Wqkv) computes all three
        query, key, value = flags * 3 if len(flags) == 1 else flags
        attention = (query, key, value)
    return UnitCost(unit, tuple(matrices), any(n in trainable for n in names),
                    per_token=unit not in ("pooler", "head"), attention=attention, cut=cut)


def train_flops(
    units: list[UnitCost], lengths: np.ndarray, hidden_size: int, epochs: float,
    prefix_units: int, cached: bool,
) -> dict[str, float]:
    """FLOPs of a training run over sequences of ``lengths`` (see the module docstring).

    ``prefix_units`` is how many bottom units form the frozen prefix (no autograd); when ``cached``
    their forward runs once (``cache_build``) instead of every epoch. The naive count is the same
    run without the cache and with the last block whole.
    """
    positions = Positions.of_lengths(lengths)
    prefix, rest = pass_flops(units, positions, hidden_size, prefix_units=prefix_units)
    naive = sum(pass_flops(units, positions, hidden_size, prefix_units=prefix_units, whole=True))
    return {
        "train_flops": epochs * (rest if cached else prefix + rest),
        "train_flops_naive": epochs * naive,
        "cache_build_flops": prefix if cached else 0.0,
    }


def scheduled_train_flops(stages: list[tuple[float, list[UnitCost]]], lengths: np.ndarray,
                          hidden_size: int, epochs: float) -> dict[str, float]:
    """FLOPs of a run whose trainable set changes (gradual unfreezing): each stage's count,
    weighted by its share of the steps. A stage's frozen prefix is its leading units that do not
    train; schedules never read the cache."""
    total = {"train_flops": 0.0, "train_flops_naive": 0.0, "cache_build_flops": 0.0}
    for share, units in stages:
        prefix = next((i for i, u in enumerate(units) if u.trainable or not u.per_token),
                      len(units))
        part = train_flops(units, lengths, hidden_size, epochs, prefix_units=prefix,
                           cached=False)
        for key in total:
            total[key] += share * part[key]
    return total


@dataclass(frozen=True)
class FlopRate:
    """Training FLOPs of one pass as a function of what it computes over: a pass's count is linear
    in its tokens, sequences and (query, key) pairs, so three coefficients give the FLOPs of any
    batch, step by step, without counting unit by unit again."""

    per_token: float
    per_sequence: float
    per_pair: float

    @classmethod
    def of(cls, units: list[UnitCost], hidden_size: int, *, prefix_units: int,
           cached: bool) -> FlopRate:
        """The rate of a training pass with ``prefix_units`` frozen below (read from the cache
        when ``cached``, so their forward costs nothing here)."""
        def count(positions: Positions) -> float:
            prefix, rest = pass_flops(units, positions, hidden_size, prefix_units=prefix_units)
            return rest if cached else prefix + rest

        # a token is also one first-token pair of the cut last block (Positions.of_lengths)
        return cls(per_token=count(Positions(1.0, 0.0, 0.0, 1.0)),
                   per_sequence=count(Positions(0.0, 1.0, 0.0, 0.0)),
                   per_pair=count(Positions(0.0, 0.0, 1.0, 0.0)))

    def flops(self, lengths: Sequence[int] | np.ndarray) -> float:
        """The FLOPs of a pass over sequences of ``lengths``."""
        lengths = np.asarray(lengths, dtype=np.float64)
        return (self.per_token * float(lengths.sum()) + self.per_sequence * len(lengths)
                + self.per_pair * float((lengths ** 2).sum()))


def forward_flops(units: list[UnitCost], lengths: np.ndarray, hidden_size: int, start: int,
                  stop: int) -> float:
    """The forward pass of units ``start .. stop-1`` over sequences of ``lengths``, without
    autograd: what a frozen-prefix cache build from boundary ``start`` to ``stop`` computes."""
    positions = Positions.of_lengths(lengths)
    return sum(_unit_flops(unit, positions, hidden_size, "none", cut=unit.cut)
               for unit in units[start:stop])


def pass_flops(units: list[UnitCost], positions: Positions, hidden_size: int, *,
               prefix_units: int, whole: bool = False) -> tuple[float, float]:
    """One training pass over ``positions``: ``(the frozen prefix's forward, the rest's forward
    and backward)``; ``whole``: the last block uncut."""
    lowest = next((i for i, u in enumerate(units) if i >= prefix_units and u.trainable),
                  len(units))
    prefix = rest = 0.0
    for index, unit in enumerate(units):
        gradients: Gradients = ("none" if index < lowest
                                else "own" if index == lowest else "all")
        flops = _unit_flops(unit, positions, hidden_size, gradients,
                            cut=unit.cut and not whole)
        if index < prefix_units:
            prefix += flops
        else:
            rest += flops
    return prefix, rest


def _unit_flops(unit: UnitCost, at: Positions, hidden_size: int, gradients: Gradients,
                cut: bool) -> float:
    """One unit's forward and backward (as far as ``gradients`` asks) over ``at``."""
    flops = 0.0
    for matrix in unit.matrices:
        count = at.tokens if unit.per_token and (matrix.every_token or not cut) else at.sequences
        input_gradient = gradients == "all" or (gradients == "own" and matrix.reads_trainable)
        weight_gradient = gradients != "none" and matrix.trains
        flops += 2.0 * matrix.size * count * (1 + input_gradient + weight_gradient)
    if unit.attention is not None:
        pairs = at.first_pairs if cut else at.pairs
        flops += 2.0 * hidden_size * pairs * (2 + _attention_gradients(unit.attention, gradients))
    return flops


def _attention_gradients(depends: tuple[bool, bool, bool], gradients: Gradients) -> int:
    """How many products the attention's backward computes: the gradients of the queries, keys
    and values that need one, and of the attention weights when the queries or keys do."""
    if gradients == "none":
        return 0
    query, key, value = (True, True, True) if gradients == "all" else depends
    return query + key + value + (query or key)
