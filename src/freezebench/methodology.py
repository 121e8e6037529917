"""How the study was run: the report's Setup, How it was measured and Caveats sections.

Each section is a list of Markdown bullet lines written from the run records alone, so the report
states the recipe, devices, versions and measuring methods that the numbers actually came from.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from freezebench.analysis import record_field
from freezebench.answers import Study
from freezebench.formatting import integer_text, points_text, quantity_text
from freezebench.markdown import md_escape
from freezebench.tables import learning_rate_grid

_MEMORY_KIND = {"cuda_allocated": "peak GPU memory allocated by PyTorch "
                                  "(`torch.cuda.max_memory_allocated` after a reset)",
                "cpu_rss_growth": "growth of the process's peak resident memory (CPU run)"}


def _values(records: list[dict[str, Any]], *path: str, none: str = "not recorded") -> str:
    """The distinct values of a record field, joined (several values mean a mixed folder)."""
    found = []
    for record in records:
        value = record_field(record, path)
        value = none if value is None else value
        if value not in found:
            found.append(value)
    return ", ".join(md_escape(str(v)) for v in found) or none


def setup_lines(study: Study, records: list[dict[str, Any]]) -> list[str]:
    """The Setup section: model, data, recipe, seeds, device and versions, from ``records``."""
    done = _completed(records)
    sizes = (done[0].get("data") or {}).get("sizes") or {}
    split = ", ".join(f"{k} {integer_text(v)}" for k, v in sizes.items()) or "not recorded"
    seeds = sorted({s for seeds in study.summary["seeds"] for s in seeds})
    return [
        f"- **Model**: {md_escape(study.model)}",
        f"- **Dataset**: {md_escape(study.dataset)} (examples per split: {split}; "
        f"training examples used: {_values(done, 'config', 'max_train_samples', none='all')})",
        f"- **Recipe**: {_values(done, 'config', 'num_train_epochs')} epoch(s), batch size "
        f"{_values(done, 'config', 'per_device_train_batch_size')}, weight decay "
        f"{_values(done, 'config', 'weight_decay')}, warmup ratio "
        f"{_values(done, 'config', 'warmup_ratio')}, max length "
        f"{_values(done, 'config', 'max_length', none='model maximum')}; learning-rate grid "
        "in the table below",
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


def measurement_lines(study: Study, records: list[dict[str, Any]]) -> list[str]:
    """How each number was measured, with the record's own methods (timing, memory kind)."""
    done = _completed(records)
    kinds = {(r.get("efficiency") or {}).get("memory_kind") for r in done} - {None}
    memory = "; ".join(_MEMORY_KIND.get(k, k) for k in sorted(kinds)) or "not recorded"
    labels = (done[0].get("data") or {}).get("label_names") or []
    f1 = (f"F1 of the positive class ('{md_escape(str(labels[1]))}')" if len(labels) == 2
          else "macro-averaged F1 over the classes")
    return [
        f"- **Quality**: {f1}, and accuracy, on the test split; the validation split only "
        "chooses the learning rate.",
        "- **Learning rate**: for every strategy and seed, the learning rate with the best "
        "validation F1 was kept (ties: lower validation loss, then the smaller rate). Test "
        "numbers come from that run only, so the test split played no part in the choice.",
        f"- **Training time**: {_values(done, 'efficiency', 'timing_method')}. "
        f"{_cache_use_text(done)}{_cache_text(done)}",
        "- **Throughput**: training examples processed per second of training time.",
        f"- **Memory**: {memory}.",
        "- **FLOPs**: training FLOPs as executed, counted by freezebench with freezing, the "
        "cache (where used) and the last block (computed at the first tokens, which the head "
        "reads) taken into account; not the Trainer's `total_flos`, which ignores freezing.",
        "- **Cost**: (training time + cache build time) / 3600 × the configured price per "
        f"device hour ({_values(done, 'efficiency', 'price_per_hour')} USD); device time only.",
    ]


def _cache_use_text(done: list[dict[str, Any]]) -> str:
    """How many runs read their frozen layers' outputs from the cache instead of computing them."""
    used = sum(1 for r in done if _used_cache(r.get("efficiency") or {}))
    if not used:
        return ""
    return (f"{used} of the {len(done)} runs read their frozen layers' outputs from the "
            "frozen-prefix cache instead of computing them at every step. ")


def _used_cache(efficiency: dict[str, Any]) -> bool:
    return bool(efficiency.get("cache_hit") or efficiency.get("cache_build_seconds")
                or efficiency.get("cache_bytes"))


def _cache_text(done: list[dict[str, Any]]) -> str:
    """The frozen-prefix cache builds per strategy: a one-off cost, outside training time."""
    builds: dict[str, float] = {}
    for r in done:
        seconds = (r.get("efficiency") or {}).get("cache_build_seconds") or 0.0
        if seconds > 0:
            label = r.get("strategy_label", "?")
            builds[label] = builds.get(label, 0.0) + seconds
    if not builds:
        return "No frozen-prefix cache was built."
    return ("Building the frozen-prefix cache is a one-off cost, shared by every run with the "
            "same frozen layers (all seeds and learning rates), and not part of training time; "
            "the builds took " + ", ".join(f"{md_escape(k)} {quantity_text(v, 'time')}"
                                           for k, v in builds.items())
            + f" in total ({quantity_text(sum(builds.values()), 'time')} for the whole study).")


def caveat_lines(study: Study, records: list[dict[str, Any]]) -> list[str]:
    """What limits the conclusions: recipe, hardware, seeds, data size, grid, scope."""
    done = _completed(records)
    s = study.summary
    test_n = ((done[0].get("data") or {}).get("sizes") or {}).get("test")
    out = [
        "- **Fixed recipe**: apart from the learning rate, every strategy used the same "
        f"hyperparameters ({_values(done, 'config', 'num_train_epochs')} epoch(s), batch size "
        f"{_values(done, 'config', 'per_device_train_batch_size')}, ...). Strategies that train "
        "fewer parameters may do better with more epochs or other settings.",
        f"- **Hardware**: times and memory were measured on "
        f"{_values(done, 'env', 'device_name')}; on other hardware the seconds change, the "
        "ratios (speed-up, savings) transfer better.",
        f"- **Seeds**: {_n_range(s['n'])} seed(s) per strategy; " + (
            f"the standard deviation of test F1 between seeds is up to "
            f"{points_text(s['test_f1_std'].max())} points. Differences smaller than that are not "
            "reliable." if s["test_f1_std"].notna().any() else
            "with one seed the run-to-run spread is unknown, so small differences may be noise."),
    ]
    if isinstance(test_n, int) and test_n > 0:
        out.append(_sampling_caveat(float(s["test_f1_mean"].max()), test_n))
    out += _grid_caveats(study, records)
    mixed = _mixed_settings(done)
    if mixed:
        out.append(f"- **Mixed settings**: the runs differ in {md_escape(mixed)}; they were "
                   "pooled as if they were the same recipe.")
    out.append(f"- **Scope**: {md_escape(study.model)} on {md_escape(study.dataset)} only; "
               "other models and tasks may differ.")
    return out


def _sampling_caveat(f1: float, test_n: int) -> str:
    # F1 taken as a proportion: sqrt(p(1-p)/n) is the spread that the test sample alone gives.
    noise = 100 * math.sqrt(max(f1 * (1 - f1), 1e-12) / test_n)
    return (f"- **Dataset size**: one dataset, scored on {test_n:,} test examples; at this size "
            f"a single score carries a sampling error of about ±{noise:.1f} points (differences "
            "between strategies scored on the same examples vary less).")


def _grid_caveats(study: Study, records: list[dict[str, Any]]) -> list[str]:
    """A learning-rate grid too small to trust, or best rates at its edge."""
    out = []
    grid = learning_rate_grid(study, records)
    if max(len(g) for g in grid.values()) <= 2:
        out.append("- **Learning-rate grid**: at most two rates per strategy; a wider grid "
                   "might move the results.")
    chosen = study.summary.set_index("strategy_label")["chosen_lr"]
    edge = [label for label, rates in grid.items()
            if len(rates) > 2 and any(lr in (rates[0], rates[-1]) for lr in chosen[label])]
    if edge:
        out.append(f"- **Edge of the grid**: the best learning rate of {', '.join(edge)} lies at "
                   "the edge of the rates tried; a wider grid might improve it.")
    return out


def _completed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "completed"]


# Config fields that may differ between the runs of one study without mixing recipes.
_VARIED_BY_DESIGN = {"strategy", "strategy_params", "learning_rate", "seed", "output_dir",
                     "save_model", "disable_tqdm", "cache_dir", "device", "use_cache"}


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
