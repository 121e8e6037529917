"""``--set PATH=VALUE``: change a study's mapping from the command line, before it is validated.

As if the YAML file said so: ``PATH`` is dotted keys (``recipe.num_train_epochs``), with list
positions as numbers (``strategies.1.learning_rates``); ``VALUE`` is read as YAML (``3`` a number,
``true`` a flag, ``[1, 2]`` a list, ``null`` nothing). A key the study does not know gets the same
error as in the file, since the result is validated as the file is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from freezebench.errors import ConfigError


def apply_settings(values: dict[str, Any], settings: Sequence[str]) -> dict[str, Any]:
    """``values`` (a study mapping as read from YAML) with every ``PATH=VALUE`` of ``settings``
    set in place, in order; returns ``values``."""
    for setting in settings:
        path, sep, raw = setting.partition("=")
        if not sep or not path.strip():
            raise ConfigError(f"--set expects PATH=VALUE (e.g. recipe.num_train_epochs=3), got "
                              f"'{setting}'.")
        keys = path.strip().split(".")
        node: Any = values
        for depth, key in enumerate(keys[:-1]):
            node = _child(node, key, keys[depth + 1], ".".join(keys[:depth + 1]), setting)
        _put(node, keys[-1], yaml_value(raw), setting)
    return values


def _child(node: Any, key: str, next_key: str, where: str, setting: str) -> Any:
    """The mapping or list at ``node[key]``, made when missing (a mapping, or a list when the
    next key is a position)."""
    if isinstance(node, list):
        index = _index(node, key, where, setting)
        if isinstance(node[index], str) and where.startswith("strategies."):
            node[index] = {"name": node[index]}  # a strategy by name is {name: ...}
        child = node[index]
    else:
        if node.get(key) is None:  # missing, or empty in the YAML (``recipe:``)
            node[key] = [] if next_key.isdigit() else {}
        child = node[key]
    if not isinstance(child, (dict, list)):
        raise ConfigError(f"--set {setting}: '{where}' is {child!r}, which holds no keys.")
    return child


def _put(node: Any, key: str, value: Any, setting: str) -> None:
    if isinstance(node, list):
        node[_index(node, key, key, setting)] = value
    else:
        node[key] = value


def _index(items: list, key: str, where: str, setting: str) -> int:
    if not key.isdigit() or int(key) >= len(items):
        raise ConfigError(f"--set {setting}: '{where}' must be a position in a list of "
                          f"{len(items)} (0 to {len(items) - 1}).")
    return int(key)


def yaml_value(raw: str) -> Any:
    """``raw`` read as a YAML value (as a string where it is not valid YAML)."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
