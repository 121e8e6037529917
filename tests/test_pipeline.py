"""One run end to end: records, the frozen-prefix cache, failures (saved models: test_saving)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from freezebench.config import RunConfig
from freezebench.engine.prefix_cache import shared_store
from freezebench.errors import DataError, StrategyError
from freezebench.model.layer_map import build_layer_map
from freezebench.model.staged import StagedForward
from freezebench.pipeline import run
from freezebench.results import read_records

from .conftest import build_tiny_model


def _config(model_dir, dataset, tmp_path, **overrides) -> RunConfig:
    values = dict(model=model_dir, dataset=str(dataset), output_dir=str(tmp_path / "out"),
                  learning_rate=5e-3, per_device_train_batch_size=8, per_device_eval_batch_size=5,
                  num_train_epochs=2, disable_tqdm=True, precision="fp32")
    values.update(overrides)
    return RunConfig(**values)


@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert"])
def test_staged_forward_equals_model_forward(tokenizer, architecture):
    model = build_tiny_model(architecture, tokenizer.vocab_size).eval()
    staged = StagedForward(model, build_layer_map(model))
    batch = tokenizer(["a short one", "a somewhat longer sentence to force padding"],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = model(**batch).logits
        middle = staged.to_boundary(batch, 3)
        top = staged.to_boundary(batch, staged.num_boundaries, hidden=middle, from_boundary=3)
        assert torch.equal(staged.head(top), reference)


def test_record_holds_every_promised_field(tiny_model_dirs, sentiment_folder, tmp_path, capsys):
    record = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path,
                         strategy="bottom", strategy_params={"k": 2}))
    assert "trainable params:" in capsys.readouterr().out
    [stored] = read_records(tmp_path / "out")
    assert stored == record
    saved = json.loads((tmp_path / "out" / "runs" / f"{record.id}.json").read_text())
    assert saved["schema_version"] == 3
    assert saved["status"] == "completed" and saved["error"] is None
    assert saved["strategy_label"] == "bottom(k=2)"
    for split in ("validation", "test"):
        for key in ("accuracy", "f1", "f1_macro", "loss", "precision", "recall"):
            assert 0 <= saved["metrics"][split][key] <= (1 if key != "loss" else 100)
    eff = saved["efficiency"]
    for key in ("train_seconds", "train_samples_per_second", "eval_samples_per_second",
                "train_flops", "cost_usd"):
        assert eff[key] > 0 and math.isfinite(eff[key])
    assert eff["train_flops"] < eff["train_flops_naive"], "cached prefix runs once"
    assert saved["params"]["trainable"] < saved["params"]["total"]
    assert saved["params"]["frozen_prefix"] == "embeddings+blocks[0:2]"
    # 48 examples, batches of 8, 2 epochs: 12 steps, a point each, evaluated every 3 and at 0
    assert [h["step"] for h in saved["history"]] == list(range(13))
    assert [h["step"] for h in saved["history"] if h["validation"]] == [0, 3, 6, 9, 12]
    assert saved["history"][-1]["epoch"] == 2.0 and saved["metrics"]["selected_step"] == 12
    assert saved["data"]["sizes"] == {"train": 48, "validation": 12, "test": 12}
    assert saved["env"]["torch"] == torch.__version__.split("+")[0] or saved["env"]["torch"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("strategy,params", [("bottom", {"k": 2}), ("head", {}),
                                             ("bottom", {"k": 4})])
def test_cache_gives_the_same_metrics_as_no_cache(tiny_model_dirs, sentiment_folder, tmp_path,
                                                  strategy, params, precision):
    shared_store(None).clear()
    common = dict(strategy=strategy, strategy_params=params, precision=precision)
    cached = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path / "a", **common))
    plain = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path / "b",
                        use_cache=False, **common))
    assert cached.efficiency.cache_build_seconds > 0
    assert plain.efficiency.cache_build_seconds == 0
    for split in ("validation", "test"):
        a, b = getattr(cached.metrics, split), getattr(plain.metrics, split)
        assert a.accuracy == b.accuracy and a.f1 == b.f1
        assert a.loss == pytest.approx(b.loss, rel=1e-4)
    again = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path / "c", **common))
    assert again.efficiency.cache_hit is True
    assert again.efficiency.cache_build_seconds == 0
    assert again.metrics.test == cached.metrics.test


def test_deeper_boundary_builds_from_shallower(tiny_model_dirs, sentiment_folder, tmp_path):
    shared_store(None).clear()
    shallow = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path / "a",
                          strategy="bottom", strategy_params={"k": 1}))
    deep = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path / "b",
                       strategy="bottom", strategy_params={"k": 3}))
    reference = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path / "c",
                            strategy="bottom", strategy_params={"k": 3}, use_cache=False))
    assert not shallow.efficiency.cache_hit and not deep.efficiency.cache_hit
    assert deep.metrics.test.accuracy == reference.metrics.test.accuracy
    assert deep.metrics.test.loss == pytest.approx(reference.metrics.test.loss,
                                                            rel=1e-4)


def test_same_config_same_metrics(tiny_model_dirs, sentiment_folder, tmp_path):
    first = run(_config(tiny_model_dirs["distilbert"], sentiment_folder, tmp_path / "a",
                        strategy="full", seed=3))
    second = run(_config(tiny_model_dirs["distilbert"], sentiment_folder, tmp_path / "b",
                         strategy="full", seed=3))
    assert first.id == second.id
    assert first.metrics == second.metrics
    assert [h.train_loss for h in first.history] == \
        [h.train_loss for h in second.history]


@pytest.mark.parametrize("choice,used", [("auto", "numpy"), ("torch", "torch")])
def test_the_record_names_who_drew_dropout_masks_and_each_choice_is_reproducible(
        tiny_model_dirs, sentiment_folder, tmp_path, choice, used):
    runs = [run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path / side,
                        strategy="bitfit", dropout_masks=choice, seed=4)) for side in "ab"]
    assert {r.efficiency.dropout_masks for r in runs} == {used}
    assert runs[0].metrics == runs[1].metrics
    assert runs[0].history[-1].train_loss == runs[1].history[-1].train_loss


def test_failed_run_leaves_a_failed_record(tiny_model_dirs, sentiment_folder, tmp_path):
    config = _config(tiny_model_dirs["bert"], sentiment_folder, tmp_path, strategy="bottom",
                     strategy_params={"k": 99})
    with pytest.raises(StrategyError, match="k=99"):
        run(config)
    [record] = read_records(tmp_path / "out")
    assert record.status == "failed"
    assert "k=99" in record.error.message


def test_bad_data_fails_before_training(tiny_model_dirs, tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("text,label\ngood movie,1\n   ,0\nbad movie,0\n")
    with pytest.raises(DataError, match="row 1"):
        run(_config(tiny_model_dirs["bert"], data, tmp_path))


def test_the_data_steps_decisions_are_printed_before_training(tiny_model_dirs, sentiment_folder,
                                                                tmp_path, capsys):
    record = run(RunConfig(model=tiny_model_dirs["bert"], dataset=str(sentiment_folder),
                           strategy="head", max_train_samples=20, output_dir=str(tmp_path / "o"),
                           disable_tqdm=True, learning_rate=1e-3))
    printed = capsys.readouterr().err
    assert record.data.notes and all(f"data: {note}" in printed for note in record.data.notes)
    assert "Subsampled train to 20" in printed
