"""How the study was run: the report's Setup, Method and Caveats sections.

Each section is a list of Markdown bullet lines written from the run records alone, so the report
states the recipe, devices, versions and measuring methods that the numbers actually came from.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from freezebench.report.findings import Findings
from freezebench.report.formatting import integer_text, metric_name, quantity_text
from freezebench.report.frame import RECIPE_LABELS, record_field
from freezebench.report.markdown import md_escape

_VIEWS = {"standalone": "standalone (what one run costs on its own, from scratch: its frozen "
                        "layers' whole forward pass over the training split included)",
          "study": "in this study (each frozen-prefix cache build shared equally among the runs "
                   "that trained on its states)"}


def _values(records: list[dict[str, Any]], *path: str, none: str = "not recorded") -> str:
    """The distinct values of a record field, joined (several values mean a mixed folder)."""
    found = []
    for record in records:
        value = record_field(record, path)
        value = none if value is None else value
        if value not in found:
            found.append(value)
    return ", ".join(md_escape(str(v)) for v in found) or none


def setup_lines(study: Findings, records: list[dict[str, Any]]) -> list[str]:
    """The Setup section: model, data, recipe, seeds, device and versions, from ``records``."""
    done = _completed(records)
    sizes = (done[0].get("data") or {}).get("sizes") or {}
    split = ", ".join(f"{k} {integer_text(v)}" for k, v in sizes.items()) or "not recorded"
    seeds = sorted({s for seeds in study.summary["seeds"] for s in seeds})
    return [
        f"- **Model**: {md_escape(study.model)}",
        f"- **Dataset**: {md_escape(study.dataset)} (examples per split: {split}; "
        f"training examples used: {_values(done, 'config', 'max_train_samples', none='all')})"
        f"{_pairs_and_dropped(done)}",
        f"- **Recipe**: {_values(done, 'config', 'num_train_epochs')} epoch(s), batch size "
        f"{_values(done, 'config', 'per_device_train_batch_size')}, weight decay "
        f"{_values(done, 'config', 'weight_decay')}, warmup ratio "
        f"{_values(done, 'config', 'warmup_ratio')}, max length "
        f"{_values(done, 'config', 'max_length', none='model maximum')}; learning rates in the "
        "table below",
        *_strategy_recipes(study),
        *_pooling_lines(done),
        f"- **Seeds**: {', '.join(str(int(s)) for s in seeds)}",
        f"- **Device**: {_values(done, 'env', 'device_name')} "
        f"({_values(done, 'env', 'device')}), precision "
        f"{_values(done, 'efficiency', 'precision')}, dropout masks drawn by "
        f"{_values(done, 'efficiency', 'dropout_masks')}",
        f"- **Versions**: freezebench {_values(done, 'env', 'freezebench')}, torch "
        f"{_values(done, 'env', 'torch')}, transformers {_values(done, 'env', 'transformers')}, "
        f"datasets {_values(done, 'env', 'datasets')}, Python {_values(done, 'env', 'python')}; "
        f"commit {_values(done, 'env', 'git_commit')}",
    ]


def _pairs_and_dropped(done: list[dict[str, Any]]) -> str:
    """The Dataset line's tail: the text pair column of a sentence-pair task, and the invalid
    rows ``--drop-invalid-rows`` dropped, per split and reason."""
    data = (done[0].get("data") or {}) if done else {}
    tail = ""
    if data.get("text_pair_column"):
        tail += (f"; sentence pairs: '{md_escape(data['text_column'])}' with "
                 f"'{md_escape(data['text_pair_column'])}'")
    dropped = data.get("dropped")
    if dropped is not None:
        each = "; ".join(f"{split} {integer_text(sum(reasons.values()))} ("
                         + ", ".join(f"{integer_text(n)} {r}" for r, n in reasons.items()) + ")"
                         for split, reasons in dropped.items())
        tail += f"; invalid rows dropped: {each or 'none'}"
    return tail


def method_lines(study: Findings, records: list[dict[str, Any]]) -> list[str]:
    """How each number was produced: metric, choice of rate, uncertainty, costs, engine."""
    done = _completed(records)
    name = metric_name(study.metric)
    return [
        _decision_metric_line(study, name),
        "- **Learning rate**: one per strategy, the rate with the best mean validation "
        f"{name} over seeds (ties: lower mean validation loss, then the smaller rate); test "
        "numbers come from that rate's runs only, so the test split played no part in the "
        "choice.",
        "- **Uncertainty**: each strategy is compared with full fine-tuning seed by seed; the "
        "interval is the paired difference's two-sided 95 % t-interval. *Acceptable* means the "
        "whole interval lies above minus the tolerance (non-inferiority); stability is the share "
        "of 1000 bootstrap resamples of the seeds that recommend the same strategy. Speed-ups "
        "are means of the per-seed ratios ± their standard deviation.",
        f"- **Cost view**: the answers use the {_VIEWS[study.cost_view]} view; the table shows "
        "both speed-ups. Training time is the measured wall time of the training steps "
        "(evaluation excluded, an untimed warm-up step first in each process); "
        f"{_cache_use_text(done)}",
        "- **Memory**: what a run holds in tensors, added up: every weight, one gradient per "
        "trainable parameter, the optimizer state, the tensors saved for the backward pass at "
        "the largest step, and the cached frozen-layer states it trains on. It is counted from "
        "the tensors, the same way on a CPU and a GPU, whatever ran before in the process; an "
        "upper bound of the peak, since gradients grow as the backward pass frees activations.",
        "- **FLOPs**: counted by freezebench with freezing, the cache and the last block "
        "(computed at the first tokens, which the head reads) taken into account, checked "
        "against torch's FLOP counter in the tests; not the Trainer's `total_flos`, which "
        "ignores freezing. Standalone FLOPs add the frozen layers' forward over the training "
        "split.",
        "- **Cost**: training time in the cost view / 3600 × devices × the configured price per "
        f"device hour ({_values(done, 'efficiency', 'price_per_hour')} USD).",
        "- **Frozen layers** run in inference mode: without dropout and without autograd. The "
        "Hugging Face `Trainer` keeps dropout on in a frozen encoder, so head-only training "
        "there sees noisier features than here and usually scores lower.",
        "- **Batches**: drawn at random as the Trainer draws them, then packed (the examples of "
        "a batch share rows, attention stays within each example): the same examples and loss "
        "as padded batches with less padding; precision "
        f"{_values(done, 'efficiency', 'precision')} (auto: bf16 autocast where the hardware "
        "multiplies bf16 natively).",
    ]


def _decision_metric_line(study: Findings, name: str) -> str:
    if study.regression:
        return (f"- **Decision metric**: test {name}, which chooses the learning rates (on "
                "validation) and decides the answers; the other correlation and the mean squared "
                "error (the training loss) are shown beside it, correlations × 100 so that a "
                "difference reads in points. The runs are regressions (one output, MSE loss), so "
                "there are no trivial classifiers to compare with; a run whose predictions are "
                "one value for every example has no correlation and is counted as collapsed, "
                "and a collapsed rate is never chosen over one that did not collapse.")
    return (f"- **Decision metric**: test {name}, which chooses the learning rates (on "
            "validation) and decides the answers; accuracy and F1 are shown beside it. The "
            "trivial predictors' scores above are the floor a classifier must clear: a run that "
            "predicts fewer classes than the labels hold, or one class for over 95 % of the "
            "examples, is counted as collapsed, and a collapsed rate is never chosen over one "
            "that did not collapse.")


def _cache_use_text(done: list[dict[str, Any]]) -> str:
    used = sum(1 for r in done if (r.get("efficiency") or {}).get("prefix_builds"))
    if not used:
        return "no run read the frozen-prefix cache."
    builds = {b["key"]: b["seconds"] for r in done
              for b in (r.get("efficiency") or {}).get("prefix_builds") or []}
    return (f"{used} of the {len(done)} runs trained on cached frozen-layer states, built "
            f"{len(builds)} time(s) for the training split in "
            f"{quantity_text(sum(builds.values()), 'time')} in all.")


def caveat_lines(study: Findings, records: list[dict[str, Any]]) -> list[str]:
    """What limits the conclusions: recipe, hardware, seeds, grid, scope."""
    done = _completed(records)
    s = study.summary
    out = [
        "- **Fixed recipe**: apart from the learning rate, every strategy used the same "
        f"hyperparameters ({_values(done, 'config', 'num_train_epochs')} epoch(s), batch size "
        f"{_values(done, 'config', 'per_device_train_batch_size')}, ...). Strategies that train "
        "fewer parameters may do better with more epochs or other settings.",
        f"- **Hardware**: times were measured on {_values(done, 'env', 'device_name')}; on "
        "other hardware the seconds change, the ratios (speed-up, savings) transfer better.",
        f"- **Seeds**: {_n_range(s['n'])} seed(s) per strategy; the paired intervals in the "
        "table say how far each difference could be from its mean.",
    ]
    collapsed = int(s["collapsed_runs"].sum())
    if collapsed:
        what = ("predicted one value for every example" if study.regression
                else "predicted one class (nearly) always")
        out.append(f"- **Collapsed runs**: {collapsed} of the chosen runs {what}; their "
                   "strategies' numbers mix working and failed models.")
    out += _grid_caveats(study)
    mixed = _mixed_settings(done)
    if mixed:
        out.append(f"- **Mixed settings**: the runs differ in {md_escape(mixed)}; they were "
                   "pooled as if they were the same recipe.")
    out.append(f"- **Scope**: {md_escape(study.model)} on {md_escape(study.dataset)} only; "
               "other models and tasks may differ.")
    return out


def _grid_caveats(study: Findings) -> list[str]:
    """A learning-rate grid too small to trust, or best rates at its edge."""
    out = []
    grids = dict(zip(study.summary["strategy_label"], study.summary["rates_tried"],
                     strict=True))
    few = [k for k, g in grids.items() if len(g) <= 2]
    if few:
        out.append(f"- **Learning-rate grid**: at most two rates for {', '.join(few)}; a wider "
                   "grid might move the results.")
    edge = [k for k, r in zip(study.summary["strategy_label"], study.summary["learning_rate"],
                              strict=True)
            if len(grids[k]) > 2 and r in (min(grids[k]), max(grids[k]))]
    if edge:
        out.append(f"- **Edge of the grid**: the chosen rate of {', '.join(edge)} lies at the "
                   "edge of the rates tried; a wider grid might improve it.")
    return out


def _completed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "completed"]


# Config fields that may differ between the runs of one study without mixing recipes.
# swept by the study, or a recipe setting a strategy may have its own of (part of its label)
_VARIED_BY_DESIGN = {"strategy", "strategy_params", "learning_rate", "seed", "output_dir",
                     "save_model", "save_format", "push_to_hub", "hub_model_id", "disable_tqdm",
                     "cache_dir", "device", "use_cache", *RECIPE_LABELS}


def _pooling_lines(records: list[dict[str, Any]]) -> list[str]:
    """A line naming the pooling where the head did not read as the architecture's own does."""
    other = []
    for record in records:
        pooling = (record.get("params") or {}).get("pooling") or {}
        text = f"{pooling.get('mode')} ({pooling.get('reason')})"
        if pooling and not pooling.get("own_head") and text not in other:
            other.append(text)
    if not other:
        return []
    return [f"- **Pooling**: {md_escape(', '.join(other))}; not the architecture's own head"]


def _strategy_recipes(study: Findings) -> list[str]:
    """A line naming each strategy's recipe where strategies were given different ones."""
    recipes = study.selected.drop_duplicates("strategy_label").set_index("strategy_label")
    parsed = {label: json.loads(text) for label, text in recipes["recipe"].items()}
    varying = sorted({key for recipe in parsed.values() for key, value in recipe.items()
                      if any(other.get(key) != value for other in parsed.values())})
    if not varying:
        return []
    each = "; ".join(f"{md_escape(label)}: " + ", ".join(f"{key} {recipe[key]}"
                                                        for key in varying)
                     for label, recipe in parsed.items())
    return [f"- **Recipe by strategy** (where strategies differ): {each}"]


def _mixed_settings(records: list[dict[str, Any]]) -> str:
    """Config fields other than the swept ones that take several values, with the values."""
    values: dict[str, list[str]] = {}
    for record in records:
        for key, value in (record.get("config") or {}).items():
            seen = values.setdefault(key, [])
            if key not in _VARIED_BY_DESIGN and str(value) not in seen:
                seen.append(str(value))
    return "; ".join(f"{key} ({', '.join(v)})" for key, v in values.items() if len(v) > 1)


def _n_range(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    return str(lo) if lo == hi else f"{lo}–{hi}"

