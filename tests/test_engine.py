"""The engine: evaluation in length-grouped batches, and the precision a run resolves to."""

from __future__ import annotations

import pytest
import torch

from freezebench.config import RunConfig
from freezebench.engine.evaluation import evaluate
from freezebench.engine.freezing import apply_trainable
from freezebench.engine.precision import (
    cpu_has_native_bf16,
    resolve_precision,
    store_frozen_weights_for_autocast,
)
from freezebench.errors import TrainingError
from freezebench.model.staged import StagedForward
from freezebench.pipeline import prepare


def test_evaluation_returns_logits_in_row_order(tiny_model_dirs, sentiment_folder):
    """Batches run shortest-padding first; each row still gets its own logits and label."""
    config = RunConfig(model=tiny_model_dirs["bert"], dataset=str(sentiment_folder),
                       precision="fp32")
    prepared = prepare(config)
    model = prepared.model.eval()
    test = prepared.inputs["test"]
    assert len(set(test.lengths.tolist())) > 1, "rows of several lengths, so grouping reorders"
    result = evaluate(model, StagedForward(model, prepared.layer_map), test, boundary=0,
                      batch_size=5, device=torch.device("cpu"), precision="fp32")
    rows = prepared.tokenizer(list(prepared.task.splits["test"]["text"]), truncation=True)
    for index, input_ids in enumerate(rows["input_ids"]):
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([input_ids])).logits[0].numpy()
        assert result.logits[index] == pytest.approx(alone, abs=1e-5)
    assert result.labels.tolist() == list(prepared.task.splits["test"]["label"])


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(TrainingError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cpu)


def test_auto_precision_follows_accelerate_launch(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"  # an explicit choice wins
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert resolve_precision("auto", cpu) == "bf16"


@pytest.mark.parametrize("strategy", ["bitfit", "lora", "bottom"])
def test_frozen_weights_kept_in_bf16_give_the_same_logits(tiny_model_dirs, sentiment_folder,
                                                          strategy):
    config = RunConfig(model=tiny_model_dirs["bert"], dataset=str(sentiment_folder),
                       strategy=strategy, strategy_params={"k": 2} if strategy == "bottom" else {})
    prepared = prepare(config)
    model, ever = prepared.model, prepared.plan.ever_trainable()
    apply_trainable(model, prepared.layer_map, prepared.plan.trainable_at(0.0))
    model.eval()  # no dropout, so two forwards can be compared
    batch = prepared.tokenizer(["a tedious mess", "warm , funny and smart , a delight"],
                               padding=True, return_tensors="pt")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(**batch).logits
    assert store_frozen_weights_for_autocast(model, ever, "fp32") == 0
    cast = store_frozen_weights_for_autocast(model, ever, "bf16")
    linear = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    frozen = {n for n in linear if f"{n}.weight" not in ever}
    assert cast == len(frozen) > 0
    for name, module in linear.items():
        assert module.weight.dtype == (torch.bfloat16 if name in frozen else torch.float32)
        assert module.weight.requires_grad == (name not in frozen)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model(**batch).logits, before)
