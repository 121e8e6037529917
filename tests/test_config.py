"""Config resolution: defaults < YAML < command line, and clear errors."""

from __future__ import annotations

import pytest

from freezebench.config import RunConfig, parse_key_values, resolve_run_config
from freezebench.errors import ConfigError


def test_defaults_follow_the_study_recipe():
    config = RunConfig()
    assert (config.model, config.dataset) == ("bert-base-cased", "rotten_tomatoes")
    assert config.learning_rate == 2e-5
    assert config.per_device_train_batch_size == 16
    assert config.num_train_epochs == 1
    assert config.weight_decay == 0.01


def test_command_line_wins_over_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 1.0e-4\nstrategy: bottom\nstrategy_params: {k: 3}\nseed: 1\n")
    config = resolve_run_config(path, {"seed": 7, "learning_rate": None})
    assert config.learning_rate == 1e-4 and config.seed == 7
    assert config.strategy_params == {"k": 3}


def test_unknown_yaml_key_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lerning_rate: 0.1\n")
    expected = "unknown key 'lerning_rate'.*Did you mean 'learning_rate'"
    with pytest.raises(ConfigError, match=expected):
        resolve_run_config(path, {})


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\nstrategy: [full\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        resolve_run_config(path, {})


def test_values_out_of_range_are_refused():
    with pytest.raises(ConfigError, match="'per_device_train_batch_size' = 0"):
        resolve_run_config(None, {"per_device_train_batch_size": 0})
    with pytest.raises(ConfigError, match="'precision' = 'fp8'"):
        resolve_run_config(None, {"precision": "fp8"})


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_run_config("nowhere.yaml", {})


def test_strategy_params_parse_as_yaml_scalars():
    assert parse_key_values(["k=4", "freeze_embeddings=false", "patterns=*.a,*.b"], "x") == \
        {"k": 4, "freeze_embeddings": False, "patterns": "*.a,*.b"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_key_values(["k"], "--strategy-param")


def test_fingerprint_ignores_output_location_only():
    base = RunConfig(output_dir="a")
    assert base.fingerprint() == RunConfig(output_dir="b", save_model=True).fingerprint()
    assert base.fingerprint() != RunConfig(output_dir="a", seed=1).fingerprint()
