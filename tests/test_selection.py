"""--set edits a study's mapping before validation; --only picks some of its planned runs."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from freezebench.cli import app
from freezebench.errors import ConfigError
from freezebench.study.config import expand, load_study, parse_study
from freezebench.study.overrides import apply_settings
from freezebench.study.selection import parse_only, select_runs

STUDY = {"name": "grid", "model": "some-model", "dataset": "some-data", "seeds": [1, 2],
         "learning_rates": [1e-4, 5e-5],
         "strategies": ["full", {"name": "bottom", "params": {"k": [1, 2]}}, "lora"]}


def labels(configs) -> list[tuple[str, float, int]]:
    from freezebench.strategies import strategy_label

    return [(strategy_label(c.strategy, c.strategy_params), c.learning_rate, c.seed)
            for c in configs]


def test_set_writes_dotted_paths_and_list_positions_with_yaml_values():
    values = apply_settings(yaml.safe_load(yaml.safe_dump(STUDY)), [
        "recipe.num_train_epochs=3", "seeds=[7]", "strategies.0.learning_rates=[1e-3]",
        "strategies.1.params.k=2", "recipe.use_cache=false"])
    study = parse_study(values)
    assert study.recipe == {"num_train_epochs": 3, "use_cache": False}
    assert study.seed_list() == [7]
    assert study.strategies[0].name == "full" and study.strategies[0].learning_rates == [1e-3]
    assert {c.num_train_epochs for c in expand(study)} == {3}
    assert [c.strategy_params.get("k") for c in expand(study) if c.strategy == "bottom"] == [2, 2]


@pytest.mark.parametrize(("setting", "message"), [
    ("recipe.num_train_epoch=3", "unknown key 'recipe.num_train_epoch'. Did you mean "
                                 "'num_train_epochs'?"),
    ("seed=3", "unknown key 'seed'. Did you mean 'seeds'?"),
    ("recipe.num_train_epochs=-1", "'num_train_epochs' = -1"),
    ("strategies.5.name=full", "'strategies.5' must be a position in a list of 3 (0 to 2)"),
    ("name.first=x", "'name' is 'grid', which holds no keys"),
    ("recipe", "--set expects PATH=VALUE"),
])
def test_set_mistakes_get_the_study_file_errors(tmp_path, setting, message):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    with pytest.raises(ConfigError) as caught:
        load_study(path, settings=[setting])
    assert message in str(caught.value)


def test_only_keeps_runs_matching_every_key_and_any_of_its_values():
    configs = expand(parse_study(STUDY))
    assert len(configs) == 16
    assert {c.strategy for c in select_runs(configs, ["strategy=lora"])} == {"lora"}
    picked = select_runs(configs, ["strategy=full,lora", "seed=2", "learning_rate=5e-5"])
    assert labels(picked) == [("full", 5e-5, 2), ("lora", 5e-5, 2)]
    assert select_runs(configs, ["strategy=full", "strategy=lora"]) == select_runs(
        configs, ["strategy=full,lora"])
    assert labels(select_runs(configs, ["k=2", "seed=1"])) == [("bottom(k=2)", 1e-4, 1),
                                                              ("bottom(k=2)", 5e-5, 1)]
    assert select_runs(configs, ["model=some-model"]) == configs
    assert select_runs(configs, []) == configs
    assert parse_only(["seed=1, 2", "seed=3"]) == {"seed": ["1", "2", "3"]}


@pytest.mark.parametrize(("only", "message"), [
    (["strategy=ful"], "--only strategy=ful: no planned run has strategy ful. Did you mean "
                       "'full'? The study's values: bottom, full, lora."),
    (["seed=3"], "no planned run has seed 3. The study's values: 1, 2."),
    (["kk=1"], "--only: unknown key 'kk'. Did you mean 'k'?"),
    (["strategy=full", "k=1"], "each value is in the study, but no planned run has them all"),
    (["strategy"], "--only expects KEY=VALUE"),
])
def test_only_mistakes_are_named(only, message):
    with pytest.raises(ConfigError) as caught:
        select_runs(expand(parse_study(STUDY)), only)
    assert message in str(caught.value)


def test_sweep_dry_run_takes_only_and_set(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "output_dir": str(tmp_path / "out")}))
    result = CliRunner().invoke(app, ["sweep", "--config", str(path), "--dry-run", "--json",
                                      "--only", "strategy=bottom", "--only", "seed=1",
                                      "--set", "strategies.1.params.k=[3]",
                                      "--set", "learning_rates=[1e-3]"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [(r["strategy_label"], r["learning_rate"], r["seed"]) for r in plan] == [
        ("bottom(k=3)", 1e-3, 1)]
    assert not (tmp_path / "out").exists()


def test_set_fills_a_key_left_empty_in_the_yaml():
    values = apply_settings({**STUDY, "recipe": None}, ["recipe.max_steps=5"])
    assert parse_study(values).recipe == {"max_steps": 5}
