"""The threshold with a missed-pain guarantee, as ModelVersion.metrics stores it.

A thin adapter over :mod:`inference.thresholds.risk_control` (where the maths and its
assumptions are written down): conformal risk control bounds, in expectation, missed pain among
**all** frames; Learn-then-Test bounds, with probability 1 - delta, missed pain among all frames
or among **automatic verdicts**. With ``subjects`` each baby weighs the same and a minimum number
of babies is required.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from inference.thresholds.metrics import as_arrays, confidence_of, predicted_pain
from inference.thresholds.risk_control import (
    DEFAULT_DELTA,
    DEFAULT_MIN_SUBJECTS,
    LOSS_WORDS,
    CalibrationError,
    crc_threshold,
    guarantee_statement,
    ltt_threshold,
)

__all__ = ["guarantee_statement", "guaranteed_threshold", "missed_pain_loss"]


def missed_pain_loss(*, p_pain: Sequence[float], labels: Sequence[int], threshold: float) -> np.ndarray:
    """Per-case loss at a threshold: 1 when the case is pain, decided automatically, as nonpain.

    Nurse-routed cases (confidence below the threshold) lose 0: the nurse scores them.
    Raising the threshold can only move cases to the nurse, so the loss never increases with
    it: the monotonicity conformal risk control needs.
    """
    p, y = as_arrays(p_pain, labels)
    auto = confidence_of(p) >= threshold
    return (auto & ~predicted_pain(p) & (y == 1)).astype(np.float64)


def guaranteed_threshold(
    *,
    p_pain: Sequence[float],
    labels: Sequence[int],
    alpha: float,
    method: str = "crc",
    delta: float = DEFAULT_DELTA,
    loss: str | None = None,
    subjects: Sequence[Any] | None = None,
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
) -> dict[str, Any]:
    """The lowest confidence threshold (least nurse work) with a missed-pain guarantee.

    ``method="crc"``: conformal risk control, loss "all" (missed pain among all frames), in
    expectation. ``method="ltt"``: Learn-then-Test on the fixed grid 0.50-0.95, loss ``loss``
    (default ``"auto"``: among automatic verdicts), with probability ``1 - delta``.

    Returns ``{"statement", "alpha", "threshold", "method", "loss", "loss_key", "n_calibration",
    "n_subjects", "per_subject", "expected_manual_share", "empirical_missed_pain",
    "empirical_missed_pain_rate_auto", "all_to_nurse", "reason", "delta"}``; when nothing is
    certified ``threshold`` is 1.0, ``all_to_nurse`` True and ``reason`` says why.
    """
    if method not in {"crc", "ltt"}:
        raise ValueError(f"method must be 'crc' or 'ltt', got {method!r}")
    try:
        if method == "crc":
            if loss not in (None, "all"):
                raise CalibrationError("conformal risk control bounds missed pain among all frames: use loss 'all'")
            g = crc_threshold(p_pain=p_pain, labels=labels, alpha=alpha, subjects=subjects, min_subjects=min_subjects)
        else:
            g = ltt_threshold(
                p_pain=p_pain,
                labels=labels,
                alpha=alpha,
                delta=delta,
                loss=loss or "auto",
                subjects=subjects,
                min_subjects=min_subjects,
            )
    except CalibrationError as exc:
        raise ValueError(str(exc)) from exc
    return {
        "statement": g.statement,
        "alpha": g.alpha,
        "threshold": g.threshold,
        "method": "conformal-risk-control" if method == "crc" else "learn-then-test",
        "loss": LOSS_WORDS[g.loss],
        "loss_key": g.loss,
        "n_calibration": g.n_frames,
        "n_subjects": g.n_subjects,
        "per_subject": g.per_subject,
        "expected_manual_share": g.manual_share,
        "empirical_missed_pain": g.missed_pain_all,
        "empirical_missed_pain_rate_auto": g.missed_pain_auto if g.missed_pain_auto is not None else 0.0,
        "all_to_nurse": g.all_to_nurse,
        "reason": g.reason,
        "delta": g.delta,
    }
