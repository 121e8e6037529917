"""Task metrics of a split, whether the classifier collapsed, and what trivial predictors score
(a regression: Pearson, Spearman and MSE).

A classifier that predicts one class for everything scores well on some metrics (on a balanced
binary split, the positive class's F1 is 2/3), so every split's record says how many examples
each class was predicted for and whether the run collapsed; the report compares the metric with
the scores of the trivial predictors (:func:`trivial_scores`).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_squared_error,
    precision_score,
    recall_score,
)

from freezebench.record import COLLAPSE_SHARE, SplitMetrics


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, label_names: list[str], loss: float
) -> SplitMetrics:
    """Accuracy, F1 (binary: label 1 positive, else macro), macro-F1, precision, recall, the
    predicted class counts and whether the predictions collapsed."""
    predictions = logits.argmax(axis=-1)
    binary = len(label_names) == 2
    average = "binary" if binary else "macro"
    ids = list(range(len(label_names)))
    per_class = f1_score(labels, predictions, labels=ids, average=None, zero_division=0)
    predicted = np.bincount(predictions, minlength=len(ids))
    return SplitMetrics(
        accuracy=float(accuracy_score(labels, predictions)),
        f1=float(f1_score(labels, predictions, average=average, zero_division=0)),
        f1_macro=float(f1_score(labels, predictions, labels=ids, average="macro",
                                zero_division=0)),
        precision=float(precision_score(labels, predictions, average=average, zero_division=0)),
        recall=float(recall_score(labels, predictions, average=average, zero_division=0)),
        loss=float(loss),
        per_class_f1={name: float(v) for name, v in zip(label_names, per_class, strict=True)},
        samples=int(len(labels)),
        predicted={name: int(n) for name, n in zip(label_names, predicted, strict=True)},
        collapsed=collapsed(predicted, np.bincount(labels, minlength=len(ids))),
    )


def regression_metrics(logits: np.ndarray, labels: np.ndarray, loss: float) -> SplitMetrics:
    """Pearson's r and Spearman's rank correlation of the single output with the scores, and
    their mean squared error; the classification fields stay empty. Constant predictions (the
    regression's collapse: one value for every example) have no correlation: null, and the
    split counts as collapsed."""
    predictions = logits.reshape(len(labels), -1)[:, 0].astype(np.float64)
    scores = labels.astype(np.float64)
    return SplitMetrics(
        accuracy=None, f1=None, f1_macro=None, precision=None, recall=None, per_class_f1=None,
        loss=float(loss), samples=int(len(labels)),
        pearson=_correlation(stats.pearsonr, predictions, scores),
        spearman=_correlation(stats.spearmanr, predictions, scores),
        mse=float(mean_squared_error(scores, predictions)),
        collapsed=bool(np.ptp(predictions) == 0) if len(predictions) > 1 else None,
    )


def _correlation(measure, predictions: np.ndarray, scores: np.ndarray) -> float | None:
    with warnings.catch_warnings():  # constant input: scipy warns and returns NaN
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = float(measure(predictions, scores)[0])  # the statistic, then its p-value
    return value if np.isfinite(value) else None


def collapsed(predicted: np.ndarray, actual: np.ndarray) -> bool:
    """Fewer classes predicted than present, or one class taking over ``COLLAPSE_SHARE`` of the
    predictions where no class holds that share of the labels."""
    fewer = np.count_nonzero(predicted) < np.count_nonzero(actual)
    share = predicted.max() / max(predicted.sum(), 1)
    dominant = share > COLLAPSE_SHARE and actual.max() / max(actual.sum(), 1) <= COLLAPSE_SHARE
    return bool(fewer or dominant)


def trivial_scores(counts: dict[str, int]) -> dict[str, dict[str, float]]:
    """What predicting one class for every example scores on a split with these class counts,
    for each class, in accuracy, ``f1`` (class 1 for two classes, else macro) and ``f1_macro``.

    Computed by scoring the constant predictions with the same functions as the runs.
    """
    names = list(counts)
    labels = np.repeat(np.arange(len(names)), [counts[n] for n in names])
    logits = np.zeros((len(labels), len(names)))
    scores = {}
    for index, name in enumerate(names):
        constant = logits.copy()
        constant[:, index] = 1.0
        metrics = classification_metrics(constant, labels, names, loss=float("nan"))
        scores[name] = {"accuracy": metrics.accuracy, "f1": metrics.f1,
                        "f1_macro": metrics.f1_macro}
    return scores


def chance_scores(counts: dict[str, int]) -> dict[str, float]:
    """The expected scores of guessing each class with equal probability, in the limit of many
    examples: each class is then predicted for a ``1/K`` share of every class."""
    shares = np.array(list(counts.values()), dtype=float)
    shares /= shares.sum()
    k = len(shares)
    precision = shares  # of the examples guessed as class c, a share p_c are c
    recall = np.full(k, 1.0 / k)
    f1 = 2 * precision * recall / (precision + recall)
    return {"accuracy": 1.0 / k, "f1": float(f1[1]) if k == 2 else float(f1.mean()),
            "f1_macro": float(f1.mean())}
