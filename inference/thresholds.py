"""Threshold analysis for the human-in-the-loop triage: pure numpy, no torch, no Django.

Every function takes ``p_pain`` (the model's softmax probability of pain, as served) and
``labels`` (1 = pain, 0 = nonpain, the nurse's NIPS decision) for a labelled held-out set.

The routing rule is the paper's (Zhao et al. 2024) and the platform's: the model's verdict is
the class with the higher probability, its *confidence* is that probability
(``max(p, 1 - p)``), and a frame whose confidence is **at or above** the unit's threshold is
decided automatically; below it, the frame goes to a nurse.

Assumption behind the paper's "framework accuracy" (:func:`threshold_table`): a case routed
to a nurse is counted as correct, i.e. the nurse's NIPS decision is the reference standard.
The figure therefore measures the model's share of the error, not the nurses'.

The threshold with a guarantee (:func:`guaranteed_threshold`) uses conformal risk control
(Angelopoulos et al. 2022, "Conformal Risk Control", Thm 1) or Learn-then-Test
(Angelopoulos et al. 2021) on nurse-labelled calibration data; see its docstring and
docs/learning.md for what is guaranteed and under which assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Thresholds the table reports by default: the paper's 0.55 and 0.6 among them.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)

_EPS = 1e-7


def _as_arrays(p_pain: Iterable[float], labels: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
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


# ---------------------------------------------------------------------------------------------
# Basic figures
# ---------------------------------------------------------------------------------------------


def binary_metrics(*, p_pain: Sequence[float], labels: Sequence[int]) -> dict[str, float | int | None]:
    """Accuracy, sensitivity (pain recall), specificity, AUC and counts at the 0.5 cut-off."""
    p, y = _as_arrays(p_pain, labels)
    pred = predicted_pain(p)
    tp = int(np.sum(pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    n = int(y.size)
    return {
        "n": n,
        "n_pain": int(np.sum(y == 1)),
        "accuracy": (tp + tn) / n if n else None,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "auc": roc_auc(p_pain=p, labels=y),
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }


def roc_auc(*, p_pain: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); None with one class."""
    p, y = _as_arrays(p_pain, labels)
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


# ---------------------------------------------------------------------------------------------
# The paper's threshold table and the risk-coverage curve
# ---------------------------------------------------------------------------------------------


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
    p, y = _as_arrays(p_pain, labels)
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


def risk_coverage_curve(*, p_pain: Sequence[float], labels: Sequence[int]) -> list[dict[str, float]]:
    """Selective risk (error rate among auto-decided cases) at each coverage, most confident first.

    Points ``{"coverage", "risk", "threshold"}``; cases with tied confidence enter together,
    because a threshold cannot separate them.
    """
    p, y = _as_arrays(p_pain, labels)
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
    return [
        {"coverage": float((i + 1) / n), "risk": float(cum_errors[i] / (i + 1)), "threshold": float(conf_sorted[i])}
        for i in last_of_run
    ]


def aurc(*, p_pain: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the risk-coverage curve (Geifman et al. 2019): mean selective risk over coverages.

    Lower is better; it rewards both accuracy and putting the errors at low confidence,
    which is what the nurse branch relies on. Ties in confidence are averaged as a group.
    """
    p, y = _as_arrays(p_pain, labels)
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


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------


def expected_calibration_error(*, p_pain: Sequence[float], labels: Sequence[int], n_bins: int = 10) -> float | None:
    """Top-label ECE with equal-width confidence bins over [0.5, 1] (Guo et al. 2017).

    The confidence that is thresholded is the one whose calibration matters, so bins are on
    ``max(p, 1-p)`` and accuracy is of the predicted class.
    """
    p, y = _as_arrays(p_pain, labels)
    n = y.size
    if n == 0:
        return None
    conf = confidence_of(p)
    correct = (predicted_pain(p) == (y == 1)).astype(np.float64)
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    bin_index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bin_index == b
        if mask.any():
            ece += mask.sum() / n * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def logit_of(p_pain: Sequence[float]) -> np.ndarray:
    """log(p / (1 - p)): the two-class softmax logit difference the probability came from."""
    p = np.clip(np.asarray(p_pain, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def temperature_apply(p_pain: Sequence[float], temperature: float) -> np.ndarray:
    """softmax(z / T) for two classes, i.e. sigmoid(logit / T)."""
    z = logit_of(p_pain) / float(temperature)
    return 1.0 / (1.0 + np.exp(-z))


def _nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    s = z / temperature
    # log(1 + exp(-s)) for pain, log(1 + exp(s)) for nonpain, computed stably.
    return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -s, s))))


def temperature_fit(
    *, p_pain: Sequence[float], labels: Sequence[int], bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """Temperature T minimising the negative log-likelihood on calibration data (Guo et al. 2017).

    One parameter, so a golden-section search on log T is exact enough and needs no optimiser.
    T > 1 softens an over-confident model; ranking (AUC, AURC) is unchanged.
    """
    p, y = _as_arrays(p_pain, labels)
    if y.size == 0:
        return 1.0
    z = logit_of(p)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = _nll(z, y, math.exp(c)), _nll(z, y, math.exp(d))
    for _ in range(100):
        if b - a < 1e-6:
            break
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = _nll(z, y, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = _nll(z, y, math.exp(d))
    return float(math.exp((a + b) / 2.0))


# ---------------------------------------------------------------------------------------------
# The threshold with a guarantee
# ---------------------------------------------------------------------------------------------


def missed_pain_loss(*, p_pain: Sequence[float], labels: Sequence[int], threshold: float) -> np.ndarray:
    """Per-case loss at a threshold: 1 when the case is pain, decided automatically, as nonpain.

    Nurse-routed cases (confidence below the threshold) lose 0: the nurse scores them.
    Raising the threshold can only move cases to the nurse, so the loss never increases with
    it: the monotonicity conformal risk control needs.
    """
    p, y = _as_arrays(p_pain, labels)
    auto = confidence_of(p) >= threshold
    return (auto & ~predicted_pain(p) & (y == 1)).astype(np.float64)


def _candidate_thresholds(conf: np.ndarray) -> np.ndarray:
    """Every threshold that changes the routing of some calibration case, plus 0.5."""
    return np.unique(np.concatenate(([0.5], conf[conf >= 0.5])))


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (no scipy needed)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k + 1)
    ]
    top = max(terms)
    return float(min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms)))


def guaranteed_threshold(
    *,
    p_pain: Sequence[float],
    labels: Sequence[int],
    alpha: float,
    method: str = "crc",
    delta: float = 0.1,
) -> dict[str, Any]:
    """The lowest confidence threshold (smallest nurse workload) with a missed-pain guarantee.

    ``method="crc"`` (default), conformal risk control. Loss ``L_i(t)`` = 1 if case i is pain
    and the model decides it automatically as nonpain at threshold t, else 0 (nurse-routed
    cases lose 0), counted over **all** cases. With n calibration cases the chosen threshold
    is the smallest t with ``n/(n+1) * mean_i L_i(t) + 1/(n+1) <= alpha`` (loss bound B = 1).
    Guarantee (Angelopoulos et al. 2022, Thm 1): if the calibration cases and a new case are
    exchangeable, ``P(new case is a missed pain) <= alpha``, in expectation over the draw of
    the calibration set. It bounds missed pain as a share of *all* frames; the share among
    automatically decided frames is larger by 1 / (auto share).

    ``method="ltt"``, Learn-then-Test with an exact binomial test and fixed-sequence
    testing from the highest threshold down: bounds the missed-pain rate *among automatically
    decided cases*, ``P(miss | auto) <= alpha``, with probability at least ``1 - delta`` over
    the calibration draw (a high-probability, conditional statement; needs more data).

    Returns ``{"alpha", "threshold", "method", "n_calibration", "expected_manual_share",
    "empirical_missed_pain", "all_to_nurse", "delta"}``. When no threshold short of sending
    every case to a nurse satisfies the bound, ``threshold`` is 1.0 and ``all_to_nurse`` is
    True (a frame with confidence exactly 1.0 would still be automatic: keep alpha
    achievable for the calibration size, alpha >= 1/(n+1) for CRC).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if method not in {"crc", "ltt"}:
        raise ValueError(f"method must be 'crc' or 'ltt', got {method!r}")
    p, y = _as_arrays(p_pain, labels)
    n = int(y.size)
    conf = confidence_of(p)
    miss_if_auto = ~predicted_pain(p) & (y == 1)
    chosen: float | None = None
    if n:
        # Candidates ascending: lowest threshold = least nurse work.
        candidates = _candidate_thresholds(conf)
        if method == "crc":
            # Empirical risk at every candidate at once: misses among cases with conf >= t.
            order = np.argsort(conf, kind="mergesort")
            sorted_conf = conf[order]
            misses_from = np.concatenate((np.cumsum(miss_if_auto[order][::-1])[::-1], [0]))
            risks = misses_from[np.searchsorted(sorted_conf, candidates, side="left")] / n
            feasible = np.flatnonzero(n / (n + 1) * risks + 1.0 / (n + 1) <= alpha)
            if feasible.size:
                chosen = float(candidates[feasible[0]])
        else:
            # Fixed-sequence testing from the most conservative threshold down; stop at the first
            # threshold whose null "risk among auto > alpha" cannot be rejected at level delta.
            for t in candidates[::-1]:
                auto = conf >= t
                n_auto = int(auto.sum())
                misses = int(np.sum(miss_if_auto & auto))
                p_value = _binomial_cdf(misses, n_auto, alpha) if n_auto else 1.0
                if p_value > delta:
                    break
                chosen = float(t)
    all_to_nurse = chosen is None
    threshold = 1.0 if all_to_nurse else chosen
    auto = conf >= threshold if not all_to_nurse else np.zeros(n, dtype=bool)
    n_auto = int(auto.sum())
    manual_share = float(1.0 - n_auto / n) if n else 1.0
    return {
        "statement": guarantee_statement(
            method=method,
            alpha=alpha,
            threshold=threshold,
            n=n,
            manual_share=manual_share,
            delta=delta,
            all_to_nurse=all_to_nurse,
        ),
        "alpha": float(alpha),
        "threshold": float(threshold),
        "method": "conformal-risk-control" if method == "crc" else "learn-then-test-binomial",
        "loss": "missed pain among all frames" if method == "crc" else "missed pain among auto-decided frames",
        "n_calibration": n,
        "expected_manual_share": manual_share,
        "empirical_missed_pain": float(np.mean(miss_if_auto & auto)) if n else 0.0,
        "empirical_missed_pain_rate_auto": float(np.sum(miss_if_auto & auto) / n_auto) if n_auto else 0.0,
        "all_to_nurse": all_to_nurse,
        "delta": float(delta) if method == "ltt" else None,
    }


def guarantee_statement(
    *,
    method: str,
    alpha: float,
    threshold: float,
    n: int,
    manual_share: float,
    delta: float = 0.1,
    all_to_nurse: bool = False,
) -> str:
    """The guarantee and its assumptions in plain words, for the unit admin's page."""
    if all_to_nurse:
        return (
            f"No threshold below 1.0 keeps missed pain under {alpha:.1%} with {n} labelled calibration frames: "
            "every frame should go to a nurse. More nurse-labelled frames (or a better model) are needed."
        )
    assumptions = (
        f"It assumes that future frames resemble the {n} nurse-labelled frames it was computed on (same unit, "
        "cameras and kind of patients, no change over time; frames of one baby are not independent, so more "
        "babies matter more than more frames), and it takes the nurses' NIPS verdict as the truth. "
        "Recompute it after any change of model, camera or population."
    )
    if method == "crc":
        return (
            f"At a threshold of {threshold:.3f}, on average no more than {alpha:.1%} of all frames will be a baby in "
            f"pain whom the model called 'no pain' without asking a nurse; about {manual_share:.0%} of frames go to "
            "a nurse. 'On average' means over the chance of which frames were used to set the threshold: a "
            f"particular week can be worse. {assumptions}"
        )
    return (
        f"At a threshold of {threshold:.3f}, with {1 - delta:.0%} confidence, no more than {alpha:.1%} of the "
        f"frames the model decides on its own are a baby in pain whom it called 'no pain'; about "
        f"{manual_share:.0%} of frames go to a nurse. {assumptions}"
    )


# ---------------------------------------------------------------------------------------------
# Everything together, for a ModelVersion's metrics
# ---------------------------------------------------------------------------------------------


def threshold_analysis(
    *,
    p_pain: Sequence[float],
    labels: Sequence[int],
    alpha: float = 0.05,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    calibration_p_pain: Sequence[float] | None = None,
    calibration_labels: Sequence[int] | None = None,
) -> dict[str, Any]:
    """All threshold figures for a labelled held-out set, keyed as ModelVersion.metrics stores them.

    The temperature is fitted on ``calibration_*`` when given, else on the same set (then
    ``ece_temperature_scaled`` is an in-sample figure; the metrics say which). Pass ``p_pain``
    as the workers will see it (softmax with the bundle's temperature): the table, AURC and
    the guarantee are computed on it unchanged. A temperature changes no ranking, so the set of
    automatic verdicts at the guaranteed threshold does not depend on it.
    """
    p, y = _as_arrays(p_pain, labels)
    if calibration_p_pain is not None and calibration_labels is not None:
        cal_p, cal_y = _as_arrays(calibration_p_pain, calibration_labels)
        temperature_source = "separate calibration set"
    else:
        cal_p, cal_y = p, y
        temperature_source = "same set (in-sample)"
    temperature = temperature_fit(p_pain=cal_p, labels=cal_y)
    scaled = temperature_apply(p, temperature)
    basic = binary_metrics(p_pain=p, labels=y)
    return {
        "accuracy": basic["accuracy"],
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
        "risk_coverage": risk_coverage_curve(p_pain=p, labels=y),
        "guarantee": guaranteed_threshold(p_pain=p, labels=y, alpha=alpha, method="crc"),
        "guarantee_conditional": guaranteed_threshold(p_pain=p, labels=y, alpha=alpha, method="ltt", delta=0.1),
    }


def plot_threshold_analysis(
    *,
    p_pain: Sequence[float],
    labels: Sequence[int],
    path: str | Path,
    title: str = "",
    temperature: float | None = None,
) -> Path:
    """Save a three-panel figure (framework accuracy/workload vs threshold, risk-coverage,
    reliability before/after temperature scaling) as PNG or SVG, by the path's suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, y = _as_arrays(p_pain, labels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.round(np.arange(0.5, 1.0001, 0.01), 4)
    table = threshold_table(p_pain=p, labels=y, thresholds=grid)
    curve = risk_coverage_curve(p_pain=p, labels=y)
    if temperature is None:
        temperature = temperature_fit(p_pain=p, labels=y)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
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
        edges = np.linspace(0.5, 1.0, 11)
        idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, 9)
        xs = [conf[idx == b].mean() for b in range(10) if (idx == b).any()]
        ys = [correct[idx == b].mean() for b in range(10) if (idx == b).any()]
        ece = expected_calibration_error(p_pain=probs, labels=y)
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.plot([0.5, 1], [0.5, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability")
    ax.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
