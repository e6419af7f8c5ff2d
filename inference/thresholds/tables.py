"""The paper's table (framework accuracy and nurse workload per threshold) and the risk-coverage curve."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from inference.thresholds.metrics import as_arrays, confidence_of, predicted_pain

#: Most points of a stored risk-coverage curve: about one per percent of the frames, both ends kept.
RISK_COVERAGE_POINTS = 101

#: Thresholds the table reports by default: the paper's 0.55 and 0.6 among them.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)


def threshold_table(
    *, p_pain: Sequence[float], labels: Sequence[int], thresholds: Iterable[float] = DEFAULT_THRESHOLDS
) -> list[dict[str, float | int | None]]:
    """The paper's table: framework accuracy and nurse workload at each confidence threshold.

    Rows ``{"threshold", "accuracy", "manual", "n", "manual_share", "auto_accuracy",
    "missed_pain", "missed_pain_rate_auto"}``. ``accuracy`` counts nurse-routed cases as
    correct (the nurse is the reference standard, as in the paper's 82.35% at 0.55);
    ``manual`` is how many cases go to a nurse (confidence below the threshold), so it can
    only grow as the threshold rises. ``missed_pain`` counts pain cases the model decided
    automatically as nonpain.
    """
    p, y = as_arrays(p_pain, labels)
    conf = confidence_of(p)
    pred = predicted_pain(p)
    correct = pred == (y == 1)
    n = int(y.size)
    rows = []
    for t in sorted(float(t) for t in thresholds):
        auto = conf >= t
        manual = int(n - auto.sum())
        n_auto = int(auto.sum())
        auto_correct = int(np.sum(correct & auto))
        missed = int(np.sum(auto & ~pred & (y == 1)))
        rows.append(
            {
                "threshold": round(t, 6),
                "accuracy": (auto_correct + manual) / n if n else None,
                "manual": manual,
                "n": n,
                "manual_share": manual / n if n else None,
                "auto_accuracy": auto_correct / n_auto if n_auto else None,
                "missed_pain": missed,
                "missed_pain_rate_auto": missed / n_auto if n_auto else None,
            }
        )
    return rows


def risk_coverage_curve(
    *, p_pain: Sequence[float], labels: Sequence[int], max_points: int | None = None
) -> list[dict[str, float]]:
    """Selective risk (error rate among auto-decided cases) at each coverage, most confident first.

    Points ``{"coverage", "risk", "threshold"}``; cases with tied confidence enter together,
    because a threshold cannot separate them. ``max_points`` thins the curve to at most that
    many points, evenly spaced along it, first and last kept (for storage and JSON; AURC is
    computed on every frame).
    """
    p, y = as_arrays(p_pain, labels)
    n = y.size
    if n == 0:
        return []
    conf = confidence_of(p)
    errors = (predicted_pain(p) != (y == 1)).astype(np.float64)
    order = np.argsort(-conf, kind="mergesort")
    conf_sorted = conf[order]
    cum_errors = np.cumsum(errors[order])
    # Last index of each run of equal confidences.
    last_of_run = np.flatnonzero(np.append(np.diff(conf_sorted) != 0, True))
    if max_points is not None and last_of_run.size > max_points:
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        keep = np.unique(np.round(np.linspace(0, last_of_run.size - 1, max_points)).astype(np.int64))
        last_of_run = last_of_run[keep]
    return [
        {"coverage": float((i + 1) / n), "risk": float(cum_errors[i] / (i + 1)), "threshold": float(conf_sorted[i])}
        for i in last_of_run
    ]


def aurc(*, p_pain: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the risk-coverage curve (Geifman et al. 2019): mean selective risk over coverages.

    Lower is better; it rewards both accuracy and putting the errors at low confidence,
    which is what the nurse branch relies on. Ties in confidence are averaged as a group.
    """
    p, y = as_arrays(p_pain, labels)
    n = y.size
    if n == 0:
        return None
    conf = confidence_of(p)
    errors = (predicted_pain(p) != (y == 1)).astype(np.float64)
    order = np.argsort(-conf, kind="mergesort")
    conf_sorted = conf[order]
    err_sorted = errors[order].copy()
    # Within a run of ties the order is arbitrary: spread the run's errors evenly.
    boundaries = np.flatnonzero(np.diff(conf_sorted)) + 1
    for start, end in zip(np.concatenate(([0], boundaries)), np.concatenate((boundaries, [n]))):
        err_sorted[start:end] = err_sorted[start:end].mean()
    risks = np.cumsum(err_sorted) / np.arange(1, n + 1)
    return float(risks.mean())
