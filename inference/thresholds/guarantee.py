"""The threshold with a missed-pain guarantee: conformal risk control or Learn-then-Test.

Conformal risk control (Angelopoulos et al. 2022, "Conformal Risk Control", Thm 1) bounds the
expected share of all frames that are a missed pain; Learn-then-Test (Angelopoulos et al.
2021) bounds the missed-pain rate among automatic verdicts with high probability. Both run
on nurse-labelled calibration data; :func:`guarantee_statement` says what that means in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from inference.thresholds.metrics import as_arrays, confidence_of, predicted_pain


def missed_pain_loss(*, p_pain: Sequence[float], labels: Sequence[int], threshold: float) -> np.ndarray:
    """Per-case loss at a threshold: 1 when the case is pain, decided automatically, as nonpain.

    Nurse-routed cases (confidence below the threshold) lose 0: the nurse scores them.
    Raising the threshold can only move cases to the nurse, so the loss never increases with
    it: the monotonicity conformal risk control needs.
    """
    p, y = as_arrays(p_pain, labels)
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
    p, y = as_arrays(p_pain, labels)
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
