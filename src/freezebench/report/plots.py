"""The report's figures, drawn with matplotlib's Agg canvas: one function per figure.

Figures are built from ``matplotlib.figure.Figure`` directly, never through pyplot, so nothing
needs a display and no global backend or figure registry is touched. Every ``plot_*`` function
takes the per-strategy summary from :mod:`freezebench.report.analysis` (or its training curves)
and returns the ``Figure``, or ``None`` when the study has nothing to draw; :func:`save_figure`
writes one as PNG, SVG or PDF. F1 is shown in percent so that differences read directly as points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from freezebench.report.analysis import BASELINE, pareto_front
from freezebench.report.formatting import points_word, scale
from freezebench.report.frame import RECIPE_LABELS

# cost name -> summary column, axis title, unit family
COSTS = {
    "time": ("seconds", "Training time", "time"),
    "flops": ("flops", "Training compute", "flops"),
    "memory": ("memory_mb", "Peak tensor memory", "memory"),
}
_FRONT, _DOMINATED, _ACCEPT = "#1f5fa8", "#9a9a9a", "#2e8b57"
DPI = 130


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, fmt: str = "png") -> Path:
    """Write ``fig`` to ``path`` as ``fmt`` (png, svg or pdf); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=DPI)
    return path


def plain(label: str) -> str:
    """``label`` shown literally: a '$' would otherwise start matplotlib's math mode."""
    return label.replace("$", r"\$")


def colors(labels: list[str]) -> dict[str, str]:
    """One stable colour per strategy label, in the order given."""
    palette = [f"C{i}" for i in range(10)]
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def plot_pareto(summary: pd.DataFrame, *, cost: str = "time",
                tolerance_points: float | None = None, baseline: str = BASELINE,
                metric: str = "F1", unit: str = "%") -> Figure | None:
    """The test metric (``quality``, mean ± std over seeds) against a cost, with the Pareto
    frontier drawn.

    When one strategy is far below the rest (head-only often is), a second panel zooms in on
    the strategies near the best score, where the decision is made. Returns ``None`` when no
    strategy has both numbers.
    """
    col, title, family = COSTS[cost]
    data = summary.dropna(subset=["quality_mean", f"{col}_mean"]).reset_index(drop=True)
    if data.empty:
        return None
    factor, cost_unit = scale(data[f"{col}_mean"], family)
    points = pd.DataFrame({
        "label": data["strategy_label"], "x": data[f"{col}_mean"] / factor,
        "y": data["quality_mean"] * 100, "xerr": data[f"{col}_std"].fillna(0) / factor,
        "yerr": data["quality_std"].fillna(0) * 100,
    })
    front = pareto_front(data, "quality_mean", f"{col}_mean")
    points["front"] = points["label"].isin(front)
    line = points.set_index("label").loc[front, ["x", "y"]]
    base = points.loc[points["label"] == baseline, "y"]
    limit = None if tolerance_points is None or base.empty else base.iloc[0] - tolerance_points
    near = _near_best(points["y"], tolerance_points)

    # One panel is too narrow for the legend in a row: it stacks below, in a taller figure.
    two = near is not None
    fig = _figure(12.5 if two else 8.0, 5.6 if two else 5.9)
    fig.subplots_adjust(left=0.07 if two else 0.1, right=0.98, top=0.88,
                        bottom=0.2 if two else 0.22, wspace=0.22)
    panels = [(points, "All strategies")]
    if two:
        panels.append((points[near], f"Zoom: within {points_word(near_span(tolerance_points))} of "
                                     f"the best {metric}"))
    for i, (shown, name) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        _draw_tradeoff(ax, shown, line, limit, zoom=i > 0)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"{title} ({cost_unit}), mean ± std over seeds")
        ax.set_ylabel(f"Test {metric} ({unit}), mean ± std over seeds")
    fig.suptitle(f"Test {metric} against {title.lower()}: up and to the left is better")
    fig.legend(handles=_tradeoff_legend(limit, tolerance_points, baseline), loc="lower center",
               ncol=3 if two else 1, frameon=False, fontsize=9)
    return fig


def near_span(tolerance_points: float | None) -> float:
    """How far below the best F1 the zoom panel reaches, in points."""
    return max(3.0, 3 * (tolerance_points or 0))


def _near_best(y: pd.Series, tolerance_points: float | None) -> pd.Series | None:
    """Points worth a zoom panel: near the best F1, when the others stretch the axis 4x more."""
    span = near_span(tolerance_points)
    near = y >= y.max() - span
    near_range = max(y[near].max() - y[near].min(), 0.5)
    if near.sum() < 3 or near.all() or (y.max() - y.min()) < 4 * near_range:
        return None
    return near


def _draw_tradeoff(ax, points: pd.DataFrame, line: pd.DataFrame, limit: float | None,
                   zoom: bool) -> None:
    ax.plot(line["x"], line["y"], "--", color=_FRONT, lw=1.3, zorder=1)
    for mask, color, face in [(points["front"], _FRONT, _FRONT),
                              (~points["front"], _DOMINATED, "white")]:
        part = points[mask]
        ax.errorbar(part["x"], part["y"], xerr=part["xerr"], yerr=part["yerr"], fmt="o", ms=7,
                    color=color, mfc=face, mec=color, ecolor=color, elinewidth=1, capsize=3,
                    zorder=3)
    if limit is not None:
        ax.axhline(limit, color=_ACCEPT, ls=":", lw=1.5, zorder=0)
    ax.grid(alpha=0.3)
    if zoom:
        # Fixed limits around the zoomed points; the frontier line is clipped at the edges.
        for axis, set_lim in [("x", ax.set_xlim), ("y", ax.set_ylim)]:
            lo = (points[axis] - points[f"{axis}err"]).min()
            hi = (points[axis] + points[f"{axis}err"]).max()
            pad = 0.15 * max(hi - lo, 1e-9)
            set_lim(lo - pad, hi + pad)
    else:
        ax.margins(x=0.12, y=0.1)
    label_points(ax, points["x"].to_numpy(), points["y"].to_numpy(), list(points["label"]),
                 xerr=points["xerr"].to_numpy(), yerr=points["yerr"].to_numpy())


def _tradeoff_legend(limit: float | None, tolerance: float | None, baseline: str) -> list:
    handles = [Line2D([], [], ls="--", color=_FRONT, marker="o", label="Pareto frontier"),
               Line2D([], [], ls="", marker="o", mfc="white", mec=_DOMINATED,
                      label="dominated (another strategy is better and cheaper)")]
    if limit is not None:
        handles.append(Line2D([], [], ls=":", color=_ACCEPT,
                              label=f"{points_word(tolerance)} below {plain(baseline)}'s mean "
                                    "(acceptable: the paired 95 % interval clears it)"))
    return handles


def plot_frozen_blocks(summary: pd.DataFrame, *, baseline: str = BASELINE,
                       metric: str = "F1", unit: str = "%") -> Figure | None:
    """The test metric and training time against the number of frozen blocks (``bottom``).

    Only ``bottom`` runs that differ from the defaults in ``k`` alone form the line, so variants
    such as ``bottom(k=4,freeze_embeddings=False)`` do not share its points (give ``summary``
    the strategies trained with one recipe: the report gives those of full fine-tuning's). Full
    fine-tuning is drawn before them, at k = -1 (nothing frozen; k = 0 freezes the embeddings).
    Returns ``None`` when there is no such run.
    """
    recipe = "|".join(RECIPE_LABELS.values())  # a recipe named in the label is no variant
    only_k = summary["strategy_label"].str.fullmatch(
        rf"bottom(\(k=\d+(,({recipe})=[^,()]+)*\))?")
    rows = summary[(summary["strategy"] == "bottom") & summary["k"].notna() & only_k]
    if rows.empty:
        return None
    base = summary[summary["strategy_label"] == baseline].assign(k=-1)
    rows = pd.concat([base, rows]).sort_values("k")
    factor, time_unit = scale(rows["seconds_mean"], "time")
    fig = _figure(9.0, 4.0)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.86, bottom=0.15, wspace=0.28)
    panels = [("quality", 100, f"Test {metric} ({unit})"), ("seconds", 1 / factor,
                                                       f"Training time ({time_unit})")]
    for i, (col, mult, label) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.errorbar(rows["k"], rows[f"{col}_mean"] * mult, yerr=rows[f"{col}_std"].fillna(0) * mult,
                    fmt="o-", color=_FRONT, capsize=3)
        ax.set_xlabel("Frozen bottom encoder blocks k (-1: full fine-tuning)")
        ax.set_ylabel(f"{label}, mean ± std")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.margins(y=0.15)
    fig.suptitle("Freezing the embeddings and the bottom k blocks")
    return fig


def plot_memory(summary: pd.DataFrame, *, baseline: str = BASELINE) -> Figure | None:
    """Peak memory per strategy as horizontal bars, the baseline's value marked.

    Returns ``None`` when no strategy has a peak memory.
    """
    data = summary.dropna(subset=["memory_mb_mean"]).sort_values("memory_mb_mean")
    if data.empty:
        return None
    factor, unit = scale(data["memory_mb_mean"], "memory")
    values = data["memory_mb_mean"] / factor
    fig = _figure(8.0, 1.8 + 0.5 * len(data))
    fig.subplots_adjust(left=0.2, right=0.9, top=1 - 0.6 / fig.get_figheight(),
                        bottom=0.95 / fig.get_figheight())
    ax = fig.add_subplot()
    palette = colors(list(summary["strategy_label"]))
    rows = np.arange(len(data))
    ax.barh(rows, values, xerr=data["memory_mb_std"].fillna(0) / factor,
            color=[palette[s] for s in data["strategy_label"]], capsize=3)
    ax.set_yticks(rows, [plain(s) for s in data["strategy_label"]])
    errors = data["memory_mb_std"].fillna(0) / factor
    digits = 0 if factor == 1 else 2
    for yi, (value, err) in enumerate(zip(values, errors, strict=True)):
        ax.text(value + err, yi, f"  {value:,.{digits}f} {unit}", va="center", fontsize=9)
    base = data.loc[data["strategy_label"] == baseline, "memory_mb_mean"]
    title = "Peak tensor memory during training"
    if len(base):
        ax.axvline(float(base.iloc[0]) / factor, color="black", ls="--", lw=1)
        title += f" (dashed line: {plain(baseline)})"
    ax.set_xlabel(f"Weights, gradients, optimizer state, saved activations and cached "
                  f"features ({unit}),\nmean ± std over seeds")
    ax.set_title(title)
    ax.set_xlim(0, float(values.max()) * 1.22)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_time_to_quality(curves: pd.DataFrame, *, order: list[str] | None = None,
                         metric: str = "F1", unit: str = "%") -> Figure | None:
    """Validation and test metric against cumulative training time and FLOPs (standalone), one
    line per strategy: the mean over seeds at each evaluation, with the 95 % interval as a band.

    Returns ``None`` when no strategy has two evaluations (nothing to draw).
    """
    if curves.empty or curves.groupby("strategy_label")["step"].nunique().max() < 2:
        return None
    labels = [label for label in (order or []) if label in set(curves["strategy_label"])]
    labels += [label for label in dict.fromkeys(curves["strategy_label"]) if label not in labels]
    palette = colors(labels)
    fig = _figure(10.5, 7.4)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.16, wspace=0.22, hspace=0.32)
    for row, split in enumerate(("validation", "test")):
        for col, (x, title, family) in enumerate([("seconds", "Training time", "time"),
                                                  ("flops", "Training compute", "flops")]):
            ax = fig.add_subplot(2, 2, 2 * row + col + 1)
            factor, x_unit = scale(curves[x], family)
            for label in labels:
                line = curves[curves["strategy_label"] == label].sort_values("step")
                xs = line[x] / factor
                ax.plot(xs, line[split] * 100, "o-", ms=3, color=palette[label],
                        label=plain(label))
                low, high = line[f"{split}_low"] * 100, line[f"{split}_high"] * 100
                if low.notna().any():
                    ax.fill_between(xs, low, high, color=palette[label], alpha=0.15, lw=0)
            ax.set_xlabel(f"{title}, standalone ({x_unit})")
            ax.set_ylabel(f"{split.capitalize()} {metric} ({unit})")
            ax.grid(alpha=0.3)
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 5), frameon=False)
    fig.suptitle("Time to quality at the chosen learning rate (mean over seeds, band: 95 % "
                 "interval)")
    return fig


def label_points(ax, xs: np.ndarray, ys: np.ndarray, labels: list[str], *,
                 xerr: np.ndarray | None = None, yerr: np.ndarray | None = None) -> None:
    """Label each point where its text overlaps no other label, point, error bar or the edge.

    Greedy: candidate offsets are tried in turn and the first free one wins (else the one with
    the least overlap), which is enough for the handful of strategies in a study.
    """
    renderer = ax.figure.canvas.get_renderer()
    ax.autoscale_view()
    to_px = ax.transData.transform
    xerr = np.zeros(len(xs)) if xerr is None else xerr
    yerr = np.zeros(len(ys)) if yerr is None else yerr
    taken = []
    for x, y, dx, dy in zip(xs, ys, xerr, yerr, strict=True):
        (x0, y0), (x1, y1) = to_px((x - dx, y - dy)), to_px((x + dx, y + dy))
        px, py = to_px((x, y))
        taken += [np.array([px - 8, py - 8, px + 8, py + 8]),  # marker
                  np.array([x0, py - 4, x1, py + 4]), np.array([px - 4, y0, px + 4, y1])]
    frame = ax.get_window_extent(renderer).extents
    offsets = [(8, 6, "left"), (8, -14, "left"), (-8, 6, "right"), (-8, -14, "right"),
               (0, 12, "center"), (0, -20, "center"), (14, 20, "left"), (-14, -26, "right")]
    for x, y, label in zip(xs, ys, labels, strict=True):
        best = None
        for dx, dy, align in offsets:
            text = ax.annotate(plain(label), (x, y), xytext=(dx, dy), textcoords="offset points",
                               ha=align, fontsize=9, zorder=4,
                               bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
            box = text.get_window_extent(renderer).extents
            cost = sum(_overlap(box, other) for other in taken) + _outside(box, frame)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, text, box)
            else:
                text.remove()
            if cost == 0:
                break
        taken.append(best[2])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


def _outside(box: np.ndarray, frame: np.ndarray) -> float:
    inside = _overlap(box, frame)
    return (box[2] - box[0]) * (box[3] - box[1]) - inside


def plot_freezing_timeline(records: list[dict]) -> Figure | None:
    """Adaptive strategies (autofreeze, freezeout): encoder blocks frozen against the training
    step, one panel per strategy, a thin step line per seed and the mean over seeds thick.

    ``records`` are run records as stored (those with a ``freezing`` list count). Returns
    ``None`` when no run froze anything during training.
    """
    runs = [r for r in records if r.get("freezing") is not None and r.get("history")]
    if not any(r["freezing"] for r in runs):
        return None
    labels = list(dict.fromkeys(r["strategy_label"] for r in runs))
    palette = colors(labels)
    fig = _figure(4.6 * len(labels), 3.8)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.84, bottom=0.16, wspace=0.25)
    for index, label in enumerate(labels):
        ax = fig.add_subplot(1, len(labels), index + 1)
        mine = [r for r in runs if r["strategy_label"] == label]
        last = max(r["history"][-1]["step"] for r in mine)
        steps = np.arange(last + 1)
        lines = []
        for record in mine:
            frozen_at = [e["step"] for e in record["freezing"] if e["unit"].startswith("blocks")]
            line = np.searchsorted(np.sort(frozen_at), steps, side="right")
            lines.append(line)
            ax.step(steps, line, where="post", color=palette[label], alpha=0.35, lw=1)
        ax.step(steps, np.mean(lines, axis=0), where="post", color=palette[label], lw=2.2,
                label=f"mean of {len(mine)} run{'s' if len(mine) != 1 else ''}")
        ax.set_title(plain(label))
        ax.set_xlabel("Training step")
        ax.set_ylabel("Encoder blocks frozen")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", frameon=False, fontsize=8)
    fig.suptitle("When adaptive strategies froze encoder blocks (thin: one seed each)")
    return fig
