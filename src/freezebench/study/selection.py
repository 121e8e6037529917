"""``--only KEY=VALUE``: run (or plan) only some of a study's runs.

``KEY`` is a run's field (``strategy``, ``seed``, ``learning_rate``, ``model``,
``num_train_epochs``, ...) or a strategy parameter (``k``); a run without that parameter does not
match. Values of one key are alternatives, given as a comma list or by repeating the option
(``strategy=full,lora`` is ``strategy=full`` plus ``strategy=lora``); different keys must all
match. Numbers compare as numbers (``learning_rate=5e-5`` matches ``5.0e-05``); ``model`` and
``dataset`` also match the offline shorthands (``model=offline-minilm``). A value no planned run
has is an error (a typo would otherwise run nothing, or everything else).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from freezebench.config import RunConfig
from freezebench.errors import ConfigError, did_you_mean
from freezebench.study.config import resolve_alias
from freezebench.study.overrides import yaml_value


def parse_only(filters: Sequence[str]) -> dict[str, list[str]]:
    """``KEY=VALUE[,VALUE...]`` filters as key -> accepted values (repeated keys add values)."""
    wanted: dict[str, list[str]] = {}
    for item in filters:
        key, sep, raw = item.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not sep or not key.strip() or not values:
            raise ConfigError(f"--only expects KEY=VALUE (e.g. strategy=lora), got '{item}'.")
        wanted.setdefault(key.strip(), []).extend(values)
    return wanted


def select_runs(configs: list[RunConfig], filters: Sequence[str]) -> list[RunConfig]:
    """The runs of ``configs`` that every ``--only`` filter keeps (all of them when none)."""
    wanted = parse_only(filters)
    if not wanted:
        return configs
    keys = {*RunConfig.model_fields, *(p for c in configs for p in c.strategy_params)}
    for key, values in wanted.items():
        if key not in keys:
            raise ConfigError(f"--only: unknown key '{key}'.{did_you_mean(key, keys)} Keys: a "
                              "run's field (strategy, seed, learning_rate, model, ...) or a "
                              "strategy parameter of the study "
                              f"({', '.join(sorted(keys - set(RunConfig.model_fields))) or 'none'}"
                              ").")
        present = _present(configs, key)
        for value in values:
            if not any(_matches(key, v, value) for v in present):
                shown = sorted({_show(v) for v in present})
                raise ConfigError(
                    f"--only {key}={value}: no planned run has {key} {value}."
                    f"{did_you_mean(value, shown)} The study's values: {', '.join(shown)}.")
    kept = [c for c in configs if all(
        any(_matches(key, v, value) for v in _present([c], key) for value in values)
        for key, values in wanted.items())]
    if not kept:
        given = " ".join(f"{k}={','.join(v)}" for k, v in wanted.items())
        raise ConfigError(f"--only {given}: each value is in the study, but no planned run has "
                          f"them all (of {len(configs)} runs).")
    return kept


def _present(configs: list[RunConfig], key: str) -> list[Any]:
    """The values ``key`` takes in ``configs`` (a run without that parameter adds none)."""
    if key in RunConfig.model_fields:
        return [getattr(c, key) for c in configs]
    return [c.strategy_params[key] for c in configs if key in c.strategy_params]


def _matches(key: str, actual: Any, wanted: str) -> bool:
    parsed = yaml_value(wanted)
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        try:
            return math.isclose(float(actual), float(parsed), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if key in ("model", "dataset") and isinstance(actual, str):
        return actual in (wanted, resolve_alias(key, wanted))
    return actual == parsed or _show(actual) == wanted


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
