"""The routing rule's pieces and the basic figures: accuracy, sensitivity, AUC, Cohen's kappa.

The model's verdict is the class with the higher probability; its *confidence* is that
probability (``max(p, 1 - p)``), which the unit's threshold is compared with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def as_arrays(p_pain: Iterable[float], labels: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(p, y)``: p(pain) clipped to [0, 1] and 0/1 labels, checked to be 1-d and of one length."""
    p = np.clip(np.asarray(list(p_pain) if not isinstance(p_pain, np.ndarray) else p_pain, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels).astype(np.int64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"p_pain and labels must be 1-d and the same length, got {p.shape} and {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (nonpain) or 1 (pain)")
    return p, y


def confidence_of(p_pain: np.ndarray) -> np.ndarray:
    """Probability of the predicted class: what the unit's threshold is compared with."""
    p = np.asarray(p_pain, dtype=np.float64)
    return np.maximum(p, 1.0 - p)


def predicted_pain(p_pain: np.ndarray) -> np.ndarray:
    """The model's verdict: pain when p >= 0.5 (ties go to pain: a missed pain costs more)."""
    return np.asarray(p_pain, dtype=np.float64) >= 0.5


def binary_metrics(*, p_pain: Sequence[float], labels: Sequence[int]) -> dict[str, float | int | None]:
    """Accuracy, sensitivity (pain recall), specificity, balanced accuracy, AUC and counts at the 0.5 cut-off.

    Balanced accuracy is the mean of the class recalls present (sensitivity and specificity;
    with one class only, that class's recall), so a model that calls everything nonpain
    scores 0.5 however imbalanced the set.
    """
    p, y = as_arrays(p_pain, labels)
    pred = predicted_pain(p)
    tp = int(np.sum(pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    n = int(y.size)
    sensitivity = tp / (tp + fn) if tp + fn else None
    specificity = tn / (tn + fp) if tn + fp else None
    recalls = [r for r in (sensitivity, specificity) if r is not None]
    return {
        "n": n,
        "n_pain": int(np.sum(y == 1)),
        "accuracy": (tp + tn) / n if n else None,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
        "auc": roc_auc(p_pain=p, labels=y),
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }


def roc_auc(*, p_pain: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); None with one class."""
    p, y = as_arrays(p_pain, labels)
    n_pos = int(np.sum(y == 1))
    n_neg = int(np.sum(y == 0))
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.size, dtype=np.float64)
    sorted_p = p[order]
    # Mid-ranks: tied scores share the average of their ranks.
    boundaries = np.flatnonzero(np.diff(sorted_p)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [p.size]))
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's kappa between two raters' labels on the same items; None when undefined.

    Undefined (None) for no items; 1.0 when both raters use a single identical category
    (perfect agreement with no chance structure to correct for).
    """
    a = list(a)
    b = list(b)
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    categories = sorted(set(a) | set(b), key=str)
    observed = sum(1 for x, y in zip(a, b) if x == y) / n
    expected = sum((a.count(c) / n) * (b.count(c) / n) for c in categories)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return float((observed - expected) / (1.0 - expected))


def wilson_interval(successes: int, n: int, *, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval for a proportion (95% by default); None when ``n`` is 0.

    Unlike the normal approximation it stays inside [0, 1] and is not zero-width at 0% or 100%:
    16 right of 16 gives 80.6%-100%, not "100%".
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n, got {successes} of {n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = (z / (1 + z2 / n)) * float(np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)))
    # Exact at the ends (the formula leaves rounding dust there).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high
