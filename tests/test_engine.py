"""The engine: evaluation in length-grouped batches, and the precision a run resolves to."""

from __future__ import annotations

import pytest
import torch

from freezebench.config import RunConfig
from freezebench.engine import cpu_has_native_bf16, evaluate, resolve_precision
from freezebench.errors import TrainingError
from freezebench.model import StagedForward
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
