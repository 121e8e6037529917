"""A decoder trains with LoRA and bottom(k) without materialising what its frozen weights do not
need (issue 17, item 5): after a backward pass no frozen parameter has a gradient, the optimizer
holds state for the trainable ones alone, a frozen prefix saves no tensor for the backward pass,
and LoRA saves what its adapters' path needs. A tiny random Qwen2 from a config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from freezebench.engine import training
from freezebench.engine.batching import forward_logits, make_batch
from freezebench.engine.freezing import apply_trainable, planned
from freezebench.measure.memory import SavedTensors
from freezebench.model.dropout import NumpyDropout, use_numpy_dropout
from freezebench.model.layer_map import unit_modules
from freezebench.model.staged import StagedForward

from .architectures import build_new_model
from .test_architectures import _examples, _split
from .test_architectures_strategies import _trained

CASES = [("lora", {}), ("bottom", {"k": 1}), ("bottom", {"k": 2}), ("full", {}), ("head", {})]


def _saved_by_unit(model, layer_map, batch, boundary: int) -> dict[str, int]:
    """Bytes autograd saves in one training forward, by the unit whose module was running
    (weights left out, as :class:`SavedTensors` counts); the backward pass runs after it."""
    running: list[str] = ["none"]  # a stack: the units whose modules are running

    def enter(unit: str) -> None:
        running.append(unit)

    def leave() -> None:
        running.pop()

    hooks = []
    for unit, modules in unit_modules(model, layer_map):
        for module in (sub for top in modules for sub in top.modules()):
            hooks.append(module.register_forward_pre_hook(lambda _m, _a, u=unit: enter(u)))
            hooks.append(module.register_forward_hook(lambda _m, _a, _o: leave()))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[str, dict[int, int]] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved.setdefault(running[-1], {})[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = forward_logits(StagedForward(model, layer_map), batch, boundary)
    for hook in hooks:
        hook.remove()
    nn.functional.cross_entropy(logits, batch.labels).backward()
    return {unit: sum(sizes.values()) for unit, sizes in saved.items()}


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize(("strategy", "params"), CASES, ids=lambda c: str(c))
def test_a_decoder_step_materialises_nothing_for_frozen_weights(tokenizer, strategy, params,
                                                                 packed):
    model, layer_map, plan = planned(build_new_model("qwen2", vocab_size=100).train(),
                                     strategy, params)
    boundary = apply_trainable(model, layer_map, plan.trainable)
    batch = make_batch(_split(_examples(8), tokenizer), list(range(8)), packed=packed)
    saved = _saved_by_unit(model, layer_map, batch, boundary)

    for name, param in model.named_parameters():
        assert (param.grad is not None) == (name in plan.trainable), name
    units = [unit for unit, _ in layer_map.units()]
    prefix, above = units[:boundary], units[boundary:]
    assert not set(saved) & set(prefix), f"the frozen prefix saved tensors: {saved}"
    assert saved.get("head", 0) > 0
    if strategy == "lora":  # embeddings frozen (the prefix); every block's adapters need grads
        assert prefix == ["embeddings"]
        assert all(saved.get(unit, 0) > 0 for unit in above if unit.startswith("blocks[")
                   and unit != units[layer_map.num_blocks])  # the last block: the cut path
    if strategy == "head":  # a linear probe saves its input, the pooled states, alone
        assert saved == {"head": batch.labels.numel() * model.config.hidden_size * 4}


@pytest.mark.parametrize("strategy", ["lora", "bottom", "head"])  # bottom: k=1
def test_a_decoder_run_keeps_optimizer_state_for_trainable_weights_only(tokenizer, strategy):
    model, _, plan, _, outcome = _trained("qwen2", strategy, tokenizer)
    trainable = {id(p): p for n, p in model.named_parameters() if n in plan.trainable}
    state = outcome.optimizer.state
    assert {id(p) for p in state} == set(trainable)
    moments = sum(state[p][m].numel() * 4 for p in trainable.values()
                  for m in ("exp_avg", "exp_avg_sq"))
    assert outcome.optimizer_state_bytes == moments + 4 * len(trainable)  # the step counters
    if strategy == "head":  # the record's activations: the pooled states and the loss's few
        # bytes (log-probabilities, labels), not the head's weight (counted before, 256 bytes)
        pooled = outcome.samples * model.config.hidden_size * 4
        weight = model.score.weight.numel() * 4
        assert pooled <= outcome.activations_bytes < pooled + weight


def test_saved_tensors_leave_out_weights_saved_as_views():
    """A linear layer saves its weight as a transposed view, not as the parameter: counting it
    made every layer's weight look like activations (a frozen one under LoRA included)."""
    layer = nn.Linear(256, 128, bias=False)
    inputs = torch.randn(4, 256)
    counted = {}
    for trains in (False, True):  # frozen weight, input needing a grad / trainable weight
        layer.weight.requires_grad_(trains)
        saved = SavedTensors(layer.parameters())
        with saved:
            layer(inputs.requires_grad_(not trains)).sum().backward()
        saved.step_done()
        counted[trains] = saved.peak_bytes
    assert counted == {False: 0, True: inputs.numel() * 4}  # the input, for the weight's grad


def test_the_warm_up_step_leaves_no_trace_on_the_model_it_runs_on(tokenizer, monkeypatch):
    """The untimed first step runs on the model itself (a copy held a second model in memory):
    weights, gradients, torch's random stream and the numpy dropout masks stay as they were."""
    model, layer_map, plan = planned(build_new_model("qwen2", vocab_size=100).train(), "lora", {})
    assert use_numpy_dropout(model, seed=(0, 0)) > 0  # LoRA's dropouts
    apply_trainable(model, layer_map, plan.trainable)
    masks = next(m for m in model.modules() if isinstance(m, NumpyDropout)).generator
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch_stream, mask_stream = torch.get_rng_state(), masks.bit_generator.state
    monkeypatch.setattr(training, "_warmed_up", False)
    calls = []
    monkeypatch.setattr(NumpyDropout, "forward", _counted(NumpyDropout.forward, calls))

    training.warm_up(StagedForward(model, layer_map), _split(_examples(8), tokenizer),
                     boundary=0, batch_size=8, device=torch.device("cpu"), precision="fp32",
                     packed=True)

    assert any(calls), "the warm-up step drew dropout masks, as a training step does"
    assert all(torch.equal(p, weights[n]) and p.grad is None for n, p in model.named_parameters())
    assert torch.equal(torch.get_rng_state(), torch_stream)
    assert masks.bit_generator.state == mask_stream


def _counted(forward, calls: list):
    def counting(self, hidden):
        calls.append(self.training)
        return forward(self, hidden)
    return counting
