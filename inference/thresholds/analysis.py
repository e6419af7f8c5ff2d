"""Every threshold figure together (as ModelVersion.metrics stores them) and their figure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.thresholds.calibration import (
    confidence_bins,
    expected_calibration_error,
    temperature_apply,
    temperature_fit,
)
from inference.thresholds.guarantee import guaranteed_threshold
from inference.thresholds.metrics import as_arrays, binary_metrics, confidence_of, predicted_pain
from inference.thresholds.tables import (
    DEFAULT_THRESHOLDS,
    RISK_COVERAGE_POINTS,
    aurc,
    risk_coverage_curve,
    threshold_table,
)


def threshold_analysis(
    *,
    p_pain: Sequence[float],
    labels: Sequence[int],
    alpha: float = 0.05,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    calibration_p_pain: Sequence[float] | None = None,
    calibration_labels: Sequence[int] | None = None,
    subjects: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """All threshold figures for a labelled held-out set, keyed as ModelVersion.metrics stores them.

    The temperature is fitted on ``calibration_*`` when given, else on the same set (then
    ``ece_temperature_scaled`` is an in-sample figure; the metrics say which). Pass ``p_pain``
    as the workers will see it (softmax with the bundle's temperature): the table, AURC and
    the guarantee are computed on it unchanged. A temperature changes no ranking, so the set of
    automatic verdicts at the guaranteed threshold does not depend on it.

    ``subjects`` (the baby of each frame) make the guarantees per baby (each baby weighs the same,
    at least :data:`~inference.thresholds.risk_control.DEFAULT_MIN_SUBJECTS` babies). The scores are
    kept under ``calibration_scores`` so :func:`guarantees_for_alpha` can recompute the guarantees
    for another alpha without the model.
    """
    p, y = as_arrays(p_pain, labels)
    if calibration_p_pain is not None and calibration_labels is not None:
        cal_p, cal_y = as_arrays(calibration_p_pain, calibration_labels)
        temperature_source = "separate calibration set"
    else:
        cal_p, cal_y = p, y
        temperature_source = "same set (in-sample)"
    temperature = temperature_fit(p_pain=cal_p, labels=cal_y)
    scaled = temperature_apply(p, temperature)
    basic = binary_metrics(p_pain=p, labels=y)
    return {
        "accuracy": basic["accuracy"],
        "balanced_accuracy": basic["balanced_accuracy"],
        "auc": basic["auc"],
        "sensitivity": basic["sensitivity"],
        "specificity": basic["specificity"],
        "confusion": {k: basic[k] for k in ("tp", "tn", "fp", "fn")},
        "n": basic["n"],
        "n_pain": basic["n_pain"],
        "aurc": aurc(p_pain=p, labels=y),
        "ece": expected_calibration_error(p_pain=p, labels=y),
        "ece_temperature_scaled": expected_calibration_error(p_pain=scaled, labels=y),
        "temperature": temperature,
        "temperature_fitted_on": temperature_source,
        "thresholds": threshold_table(p_pain=p, labels=y, thresholds=thresholds),
        "risk_coverage": risk_coverage_curve(p_pain=p, labels=y, max_points=RISK_COVERAGE_POINTS),
        "majority_baseline": max(basic["n_pain"], basic["n"] - basic["n_pain"]) / basic["n"] if basic["n"] else None,
        "calibration_scores": {
            "p_pain": [round(float(v), 6) for v in p],
            "labels": [int(v) for v in y],
            "subjects": [str(s) for s in subjects] if subjects is not None else None,
        },
        **guarantees_for_alpha(p_pain=p, labels=y, subjects=subjects, alpha=alpha),
    }


def guarantees_for_alpha(
    *, p_pain: Sequence[float], labels: Sequence[int], alpha: float, subjects: Sequence[Any] | None = None
) -> dict[str, Any]:
    """``{"guarantee": CRC (missed pain among all frames), "guarantee_conditional": LTT (among automatic verdicts)}``."""
    return {
        "guarantee": guaranteed_threshold(p_pain=p_pain, labels=labels, alpha=alpha, method="crc", subjects=subjects),
        "guarantee_conditional": guaranteed_threshold(
            p_pain=p_pain, labels=labels, alpha=alpha, method="ltt", delta=0.1, loss="auto", subjects=subjects
        ),
    }


def guarantees_from_metrics(metrics: dict[str, Any], *, alpha: float) -> dict[str, Any] | None:
    """The guarantees recomputed for ``alpha`` from a model's stored ``calibration_scores`` (None if absent)."""
    scores = metrics.get("calibration_scores")
    if not isinstance(scores, dict) or not scores.get("p_pain"):
        return None
    return guarantees_for_alpha(
        p_pain=scores["p_pain"], labels=scores["labels"], subjects=scores.get("subjects"), alpha=alpha
    )


def plot_threshold_analysis(
    *,
    p_pain: Sequence[float],
    labels: Sequence[int],
    path: str | Path,
    title: str = "",
    temperature: float | None = None,
    subjects: Sequence[str] | None = None,
) -> Path:
    """Save a three-panel figure (framework accuracy/workload vs threshold, risk-coverage,
    reliability before/after temperature scaling) as PNG or SVG, by the path's suffix.

    With ``subjects`` (one per frame) a fourth panel shows the spread over subjects: each
    subject's balanced accuracy, sensitivity and specificity, worst first, and their means.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, y = as_arrays(p_pain, labels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.round(np.arange(0.5, 1.0001, 0.01), 4)
    table = threshold_table(p_pain=p, labels=y, thresholds=grid)
    curve = risk_coverage_curve(p_pain=p, labels=y)
    if temperature is None:
        temperature = temperature_fit(p_pain=p, labels=y)

    fig, axes = plt.subplots(1, 4 if subjects is not None else 3, figsize=(20 if subjects is not None else 15, 4.4))
    ax = axes[0]
    ax.plot([r["threshold"] for r in table], [r["accuracy"] for r in table], label="framework accuracy")
    ax.set_xlabel("confidence threshold")
    ax.set_ylabel("accuracy (nurse cases counted correct)")
    ax.set_ylim(min(0.5, *(r["accuracy"] for r in table)) - 0.02, 1.02)
    ax2 = ax.twinx()
    ax2.plot(
        [r["threshold"] for r in table], [r["manual_share"] for r in table], color="tab:orange", label="share to nurse"
    )
    ax2.set_ylabel("share of cases to a nurse")
    ax2.set_ylim(-0.02, 1.02)
    for t in (0.55, 0.6):
        ax.axvline(t, color="grey", linestyle=":", linewidth=0.8)
    ax.set_title("Accuracy and nurse workload")
    ax = axes[1]
    ax.step([c["coverage"] for c in curve], [c["risk"] for c in curve], where="post")
    ax.set_xlabel("coverage (share decided automatically)")
    ax.set_ylabel("selective risk (error among automatic)")
    ax.set_title(f"Risk-coverage (AURC {aurc(p_pain=p, labels=y):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(0.05, *(c["risk"] for c in curve)) * 1.1)
    ax = axes[2]
    for probs, name in ((p, "as served"), (temperature_apply(p, temperature), f"T = {temperature:.2f}")):
        conf = confidence_of(probs)
        correct = predicted_pain(probs) == (y == 1)
        idx = confidence_bins(conf, 10)
        xs = [conf[idx == b].mean() for b in range(10) if (idx == b).any()]
        ys = [correct[idx == b].mean() for b in range(10) if (idx == b).any()]
        ece = expected_calibration_error(p_pain=probs, labels=y)
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.plot([0.5, 1], [0.5, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability")
    ax.legend(loc="lower right")
    if subjects is not None:
        _plot_subject_spread(axes[3], p, y, subjects)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_subject_spread(ax: Any, p: np.ndarray, y: np.ndarray, subjects: Sequence[str]) -> None:
    """Per-subject balanced accuracy, sensitivity and specificity, worst subject first."""
    names = np.asarray(list(subjects))
    if names.shape != y.shape:
        raise ValueError(f"subjects must name every frame: {names.shape} for {y.shape}")
    rows = []
    for subject in sorted(set(names.tolist())):
        mask = names == subject
        rows.append((subject, binary_metrics(p_pain=p[mask], labels=y[mask])))
    rows.sort(key=lambda row: row[1]["balanced_accuracy"])
    xs = np.arange(len(rows))
    for key, marker, label in (
        ("balanced_accuracy", "o", "balanced accuracy"),
        ("sensitivity", "^", "sensitivity"),
        ("specificity", "v", "specificity"),
    ):
        values = [np.nan if m[key] is None else m[key] for _, m in rows]
        points = ax.plot(xs, values, marker=marker, linestyle="none", label=label)
        ax.axhline(np.nanmean(values), color=points[0].get_color(), linestyle=":", linewidth=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([subject for subject, _ in rows], rotation=60, fontsize=7)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("per subject (dotted: mean over subjects)")
    ax.set_title(f"Spread over {len(rows)} subjects, worst first")
    ax.legend(loc="lower right", fontsize=8)
