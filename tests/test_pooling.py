"""Pooling: what the head reads. Mean pooling in the staged forward equals a mean computed from
the model's own last hidden states (logits and every gradient, padded and packed rows), a cache
after the last block gives what recomputing gives, ``auto`` finds a sentence-transformers mean,
BERT's pooler is skipped (and never trains) under mean, and what cannot pool says so."""

from __future__ import annotations

import json

import pytest
import torch

from freezebench.config import RunConfig
from freezebench.engine.batching import forward_logits, make_batch
from freezebench.engine.prefix_states import build_states
from freezebench.errors import ConfigError
from freezebench.model.layer_map import build_layer_map
from freezebench.model.pooling import apply_pooling, pooling_of, resolve_pooling
from freezebench.model.staged import StagedForward, computes_first_token_only
from freezebench.saving import check_saveable
from freezebench.strategies import plan_for

from .architectures import (
    assert_same_logits_and_gradients,
    build_new_model,
    logits_and_gradients,
)
from .conftest import build_tiny_model, minilm_path
from .test_architectures import LABELS, _examples, _packed, _padded, _split
from .test_saving import twenty_test_texts  # noqa: F401 (a fixture)

STAGED = ("bert", "roberta", "distilbert", "electra", "deberta-v2", "gpt2", "llama", "qwen3")


def _model(architecture: str, pooling: str = "mean"):
    build = build_tiny_model if architecture in ("bert", "roberta", "distilbert") else \
        build_new_model
    model = build(architecture, vocab_size=100)
    for name, param in model.named_parameters():
        if "classifier" in name or "score" in name:  # a head far from zero makes gradients count
            torch.nn.init.normal_(param, std=0.5)
    apply_pooling(model, pooling)
    return model.eval()  # no dropout: both paths must agree exactly


def _reference_mean_logits(model, staged: StagedForward, tokens) -> torch.Tensor:
    """The model's own forward to its last block, the mean over each example's real tokens of
    that block's output, then the head: BERT's classifier without its pooler, the others' own
    head on the mean (their head functions are checked against the models' own forward in
    tests/test_architectures.py)."""
    outputs = []
    hook = staged.blocks[-1].register_forward_hook(
        lambda module, args, out: outputs.append(out[0] if isinstance(out, tuple) else out))
    model(**tokens)
    hook.remove()
    mask = tokens["attention_mask"].unsqueeze(-1).to(outputs[0].dtype)
    mean = (outputs[0] * mask).sum(1) / mask.sum(1)
    if staged.spec.backbone == "bert":
        return model.classifier(model.dropout(mean))
    return staged.spec.head_fn(model, mean.unsqueeze(1))


def _logits_and_gradients(model, run):
    return logits_and_gradients(model, run, LABELS)


@pytest.mark.parametrize("architecture", STAGED)
def test_mean_pooling_equals_the_mean_of_the_models_last_hidden_states(architecture):
    model = _model(architecture)
    staged = StagedForward(model, build_layer_map(model))
    assert staged.pooling == "mean" and not computes_first_token_only(model)
    examples = _examples()
    padded = _padded(examples)
    reference, expected = _logits_and_gradients(
        model, lambda: _reference_mean_logits(model, staged, padded.tokens))
    own = model(**padded.tokens).logits.detach()
    assert not torch.allclose(own, reference, atol=1e-3)  # the mean is not the own head
    for batch in (padded, _packed(examples)):
        assert_same_logits_and_gradients(
            _logits_and_gradients(model, lambda batch=batch: forward_logits(staged, batch, 0)),
            (reference, expected))


@pytest.mark.parametrize("architecture", ["bert", "llama"])
def test_a_cache_after_the_last_block_holds_the_mean_and_gives_the_same_logits(
        tokenizer, architecture):
    model = _model(architecture)
    staged = StagedForward(model, build_layer_map(model))
    inputs = _split(_examples(24, seed=1), tokenizer)
    indices = list(range(0, 24, 3))
    top = staged.num_boundaries
    with torch.no_grad():
        expected = forward_logits(staged, make_batch(inputs, indices, packed=False), 0)
        below = build_states(staged, inputs, 2, torch.device("cpu"), "fp32")
        for start, start_boundary in ((None, 0), (below, 2)):
            inputs.cached = build_states(staged, inputs, top, torch.device("cpu"), "fp32",
                                         start=start, start_boundary=start_boundary)
            assert inputs.cached.pooled and len(inputs.cached.states) == 24
            for packed in (False, True):
                logits = forward_logits(staged, make_batch(inputs, indices, packed=packed), top)
                torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
            inputs.cached = None


def test_the_prefix_cache_key_includes_the_pooling_after_the_last_block_only():
    from freezebench.engine.prefix_states import PrefixContext

    # embeddings and two blocks: boundary 3 is after the last block
    parts = dict(unit_digests=("a", "b", "c"), data_fingerprint="d", tokenizer="t", max_length=0,
                 precision="fp32", device_type="cpu", last_boundary=3)
    top = {PrefixContext(**parts, pooling=p).key("train", 3) for p in ("cls", "mean")}
    below = {PrefixContext(**parts, pooling=p).key("train", 2) for p in ("cls", "mean")}
    assert (len(top), len(below)) == (2, 1)


def test_under_mean_berts_pooler_is_no_unit_and_never_trains():
    model = _model("bert")
    layer_map = build_layer_map(model)
    pooler = [n for n, _ in model.named_parameters() if n.startswith("bert.pooler.")]
    assert pooler and layer_map.pooler == [] and layer_map.skipped == pooler
    assert "pooler" not in [unit for unit, _ in layer_map.units()]
    for strategy in ("full", "top", "bottom"):
        assert not set(pooler) & plan_for(strategy, {}, layer_map).ever_trainable()
    assert plan_for("head", {}, layer_map).ever_trainable() == set(layer_map.head)
    own = build_layer_map(_model("bert", "cls"))
    assert own.pooler == pooler and not own.skipped


@pytest.mark.parametrize("architecture", ["roberta", "distilbert", "llama"])
def test_new_heads_and_a_decoders_final_norm_stay_under_mean(architecture):
    mean, own = (build_layer_map(_model(architecture, p)) for p in ("mean", "cls"
                 if architecture != "llama" else "last"))
    assert (mean.head, mean.pooler, mean.skipped) == (own.head, own.pooler, [])


def _folder_with_pooling(tmp_path, mean: bool):
    model = build_tiny_model("bert", vocab_size=100)
    model.save_pretrained(tmp_path)
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": not mean, "pooling_mode_mean_tokens": mean}))
    return model


@pytest.mark.parametrize("mean", [True, False])
def test_auto_is_mean_for_a_sentence_transformers_folder_that_pools_by_mean(tmp_path, mean):
    model = _folder_with_pooling(tmp_path, mean)
    choice = resolve_pooling("auto", str(tmp_path), model)
    assert (choice.mode, choice.own_head) == (("mean", False) if mean else ("cls", True))
    assert "sentence-transformers" in choice.reason if mean else "own head" in choice.reason


def test_auto_is_the_own_head_without_a_pooling_config(tmp_path):
    model = build_tiny_model("bert", vocab_size=100)
    model.save_pretrained(tmp_path)
    assert resolve_pooling("auto", str(tmp_path), model).mode == "cls"
    assert resolve_pooling("mean", str(tmp_path), model).mode == "mean"


def test_auto_reads_the_offline_minilms_mean_pooling():
    model = build_tiny_model("bert", vocab_size=100)  # its architecture; the files decide
    assert resolve_pooling("auto", minilm_path(), model).mode == "mean"


def test_auto_falls_back_to_the_own_head_with_a_note_when_a_hub_id_cannot_be_read(
        monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = build_tiny_model("bert", vocab_size=100)
    choice = resolve_pooling("auto", "freezebench-tests/no-such-model", model)
    assert choice.mode == "cls" and choice.own_head
    assert "could not read the sentence-transformers pooling config" in capsys.readouterr().err


@pytest.mark.parametrize("architecture,pooling,message", [
    ("llama", "cls", "it is a causal decoder"), ("gpt2", "cls", "it is a causal decoder"),
    ("bert", "last", "'last' is for causal decoders"),
    ("modernbert", "last", "'last' is for causal decoders")])
def test_a_pooling_the_architecture_cannot_do_is_a_clear_error(architecture, pooling, message):
    model = build_new_model(architecture, vocab_size=100) if architecture not in ("bert",) \
        else build_tiny_model("bert", vocab_size=100)
    with pytest.raises(ConfigError, match=f"Pooling '{pooling}' does not fit the "
                                          f"'{architecture}' architecture: {message}"):
        resolve_pooling(pooling, "some/model", model)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_modernbert_pools_through_its_own_classifier_pooling(pooling):
    model = build_new_model("modernbert", vocab_size=100)
    choice = resolve_pooling(pooling, "some/model", model)
    apply_pooling(model, choice.mode)
    assert choice.own_head and model.config.classifier_pooling == pooling
    assert pooling_of(model) == pooling


def test_saving_a_non_native_pooling_as_pretrained_is_refused_before_training():
    model = build_tiny_model("bert", vocab_size=100)
    choice = resolve_pooling("mean", "some/model", model)
    config = RunConfig(model="some/model", save_model=True)
    with pytest.raises(ConfigError, match="--save-format delta"):
        check_saveable(config, choice)
    check_saveable(config.model_copy(update={"save_format": "delta"}), choice)
    check_saveable(config, resolve_pooling("cls", "some/model", model))


def test_a_mean_pooled_run_saved_as_delta_loads_back_and_predicts_as_the_run(
        tiny_model_dirs, twenty_test_texts, tmp_path):  # noqa: F811 (the fixture)
    from freezebench.model.pooled import PooledClassifier
    from freezebench.saving import load_finetuned

    from .test_saving import _probabilities, _run, assert_same_as_the_runs_evaluation

    record = _run(tiny_model_dirs["bert"], twenty_test_texts, tmp_path, strategy="bottom",
                  strategy_params={"k": 1}, pooling="mean", save_format="delta")
    assert record.params.pooling.model_dump() == {"mode": "mean", "own_head": False,
                                                  "reason": "asked for"}
    assert "pooler" not in [unit.unit for unit in record.params.units]
    model, tokenizer = load_finetuned(tmp_path / "out" / "models" / record.id)
    assert isinstance(model, PooledClassifier) and model.pooling == "mean"
    assert_same_as_the_runs_evaluation(_probabilities(model, tokenizer),
                                       record.data.label_names, record)


def test_the_reports_setup_names_a_pooling_other_than_the_own_head():
    from freezebench.report.sections import _pooling_lines

    def record(mode, own_head, reason):
        return {"params": {"pooling": {"mode": mode, "own_head": own_head, "reason": reason}}}

    records = [record("mean", False, "auto: the sentence-transformers pooling config says mean"),
               record("cls", True, "asked for"), {"params": {}}]
    assert _pooling_lines(records) == [
        "- **Pooling**: mean (auto: the sentence-transformers pooling config says mean); not "
        "the architecture's own head"]
    assert _pooling_lines(records[1:]) == []
