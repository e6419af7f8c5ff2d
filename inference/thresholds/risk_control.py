"""Thresholds with a finite-sample missed-pain guarantee: pure numpy, no torch, no Django.

Two guarantees, on nurse-labelled calibration frames (``p_pain`` as served, ``labels`` 1 = pain,
``subjects`` = the baby each frame shows):

* **Conformal risk control** (CRC; Angelopoulos et al. 2022, Thm 1): the lowest threshold whose
  corrected empirical loss is <= alpha. Guarantee *in expectation* over the calibration draw:
  ``E[missed pain of a new baby] <= alpha``, the loss being the share of a baby's frames that show
  pain, are decided automatically and called "no pain" (missed pain **among all frames**).
* **Learn-then-Test** (LTT; Angelopoulos et al. 2021): thresholds on a grid fixed in advance
  (:data:`DEFAULT_GRID`, 0.50-0.95) are tested from the most conservative down (fixed-sequence
  testing), each null "the loss at t exceeds alpha" by an exact binomial (frames) or
  Hoeffding-Bentkus (babies) p-value; testing stops at the first threshold not rejected at level
  delta. Guarantee *with probability 1 - delta*: the loss at the chosen threshold is <= alpha.
  The loss is ``"all"`` (missed pain among all frames) or ``"auto"`` (missed pain among the
  frames the model decides by itself).

**Babies, not frames.** Frames of one baby are not independent; exchangeability holds between
babies. With ``subjects`` each baby weighs the same (its loss is the mean over its frames) and the
guarantee is about a new baby; fewer than ``min_subjects`` babies gives no threshold (every frame
to a nurse) and says so. Without ``subjects`` each frame is its own unit (only right when frames
really are independent draws, e.g. one frame per baby).

The routing rule is the platform's (:mod:`inference.thresholds`): confidence ``max(p, 1 - p)``,
automatic when ``confidence >= threshold``, verdict pain when ``p >= 0.5``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: LTT's candidate thresholds, fixed before any data is seen; tested from 0.95 down.
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.5 + 0.01 * k, 2) for k in range(46))
#: Below this many babies no threshold is certified (every frame goes to a nurse).
DEFAULT_MIN_SUBJECTS = 10
DEFAULT_DELTA = 0.1
LOSSES = ("all", "auto")
LOSS_WORDS = {"all": "missed pain among all frames", "auto": "missed pain among automatic verdicts"}


class CalibrationError(ValueError):
    """Calibration data or options that cannot give a guarantee; the message says why."""


@dataclass(frozen=True)
class Guarantee:
    """A certified threshold (or the reason there is none) and what it promises."""

    method: str  # "crc" | "ltt"
    loss: str  # "all" | "auto"
    alpha: float
    delta: float | None
    threshold: float
    all_to_nurse: bool
    reason: str
    n_frames: int
    n_subjects: int
    per_subject: bool
    manual_share: float
    missed_pain_all: float
    missed_pain_auto: float | None
    statement: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CalibrationSet:
    """Validated calibration arrays; ``weights`` make each unit (baby, or frame) count the same."""

    p_pain: np.ndarray
    labels: np.ndarray
    units: np.ndarray  # unit index per frame, 0..n_units-1
    n_units: int
    per_subject: bool

    @property
    def confidence(self) -> np.ndarray:
        return np.maximum(self.p_pain, 1.0 - self.p_pain)

    @property
    def miss_if_auto(self) -> np.ndarray:
        """Frames that are a missed pain whenever they are decided automatically."""
        return (self.p_pain < 0.5) & (self.labels == 1)

    @property
    def weights(self) -> np.ndarray:
        """Per-frame weight 1 / (n_units * frames of its unit): every unit sums to 1 / n_units."""
        sizes = np.bincount(self.units, minlength=self.n_units)
        return 1.0 / (self.n_units * sizes[self.units])


def calibration_set(
    *, p_pain: Sequence[float], labels: Sequence[int], subjects: Sequence[Any] | None = None
) -> CalibrationSet:
    """Check and package calibration data; raises :class:`CalibrationError` with the reason."""
    p = np.asarray(p_pain, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 1 or p.shape != y.shape:
        raise CalibrationError(f"p_pain and labels must be 1-d and the same length, got {p.shape} and {y.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise CalibrationError("p_pain must be probabilities in [0, 1]")
    if y.size and not np.isin(y, (0, 1)).all():
        raise CalibrationError("labels must be 0 (nonpain) or 1 (pain)")
    if subjects is None:
        units = np.arange(p.size)
        per_subject = False
    else:
        subject_array = np.asarray([str(s) for s in subjects])
        if subject_array.shape != p.shape:
            raise CalibrationError("subjects must give one baby per frame")
        if (subject_array == "").any():
            raise CalibrationError("every frame needs its baby (subject); some are empty")
        _names, units = np.unique(subject_array, return_inverse=True)
        per_subject = True
    return CalibrationSet(
        p_pain=p,
        labels=y.astype(np.int64),
        units=units,
        n_units=int(units.max() + 1) if units.size else 0,
        per_subject=per_subject,
    )


def _check_options(alpha: float, delta: float | None, loss: str) -> None:
    if not 0.0 < alpha < 1.0:
        raise CalibrationError(f"alpha must be in (0, 1), got {alpha}")
    if delta is not None and not 0.0 < delta < 1.0:
        raise CalibrationError(f"delta must be in (0, 1), got {delta}")
    if loss not in LOSSES:
        raise CalibrationError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


# ---------------------------------------------------------------------------------------------
# p-values
# ---------------------------------------------------------------------------------------------


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (no scipy)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = np.arange(k + 1)
    log_terms = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(v + 1) for v in i])
        - np.array([math.lgamma(n - v + 1) for v in i])
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
    )
    top = float(log_terms.max())
    return float(min(1.0, math.exp(top) * np.exp(log_terms - top).sum()))


def binomial_pvalue(*, losses: int, n: int, alpha: float) -> float:
    """Exact p-value of "risk > alpha" from ``losses`` of ``n`` Bernoulli trials: P(Bin(n, alpha) <= losses)."""
    return 1.0 if n == 0 else binomial_cdf(losses, n, alpha)


def hoeffding_bentkus_pvalue(*, mean: float, n: int, alpha: float) -> float:
    """p-value of "E[loss] > alpha" for the mean of n iid losses in [0, 1] (Bates et al. 2021, RCPS).

    ``min(exp(-n h(min(mean, alpha), alpha)), e * P(Bin(n, alpha) <= ceil(n * mean)))`` with
    ``h(a, b) = a log(a/b) + (1 - a) log((1 - a)/(1 - b))``.
    """
    if n == 0:
        return 1.0
    a = min(mean, alpha)

    def h(x: float, b: float) -> float:
        left = x * math.log(x / b) if x > 0 else 0.0
        right = (1 - x) * math.log((1 - x) / (1 - b)) if x < 1 else 0.0
        return left + right

    hoeffding = math.exp(-n * h(a, alpha))
    bentkus = math.e * binomial_cdf(math.ceil(n * mean - 1e-12), n, alpha)
    return float(min(1.0, hoeffding, bentkus))


# ---------------------------------------------------------------------------------------------
# The two guarantees
# ---------------------------------------------------------------------------------------------


def _too_few(cal: CalibrationSet, min_subjects: int) -> str:
    if cal.n_units == 0:
        return "no calibration frames"
    if cal.per_subject and cal.n_units < min_subjects:
        return f"only {cal.n_units} babies in the calibration data; at least {min_subjects} are needed"
    return ""


def crc_threshold(
    *,
    p_pain: Sequence[float],
    labels: Sequence[int],
    alpha: float,
    subjects: Sequence[Any] | None = None,
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
) -> Guarantee:
    """Conformal risk control for missed pain among all frames, per baby when ``subjects`` are given.

    With m units (babies, or frames) and ``R(t)`` the mean over units of each unit's missed-pain
    share at threshold t, the threshold is the smallest t with ``m/(m+1) R(t) + 1/(m+1) <= alpha``
    (loss bound B = 1). Then ``E[loss of a new unit] <= alpha`` if units are exchangeable.
    """
    _check_options(alpha, None, "all")
    cal = calibration_set(p_pain=p_pain, labels=labels, subjects=subjects)
    reason = _too_few(cal, min_subjects)
    chosen: float | None = None
    if not reason:
        m = cal.n_units
        conf = cal.confidence
        candidates = np.unique(np.concatenate(([0.5], conf[conf >= 0.5])))
        order = np.argsort(conf, kind="mergesort")
        weighted_miss = (cal.miss_if_auto * cal.weights)[order]
        # Weighted missed pain among frames with confidence >= t, for every candidate t at once.
        tail = np.concatenate((np.cumsum(weighted_miss[::-1])[::-1], [0.0]))
        risks = tail[np.searchsorted(conf[order], candidates, side="left")]
        feasible = np.flatnonzero(m / (m + 1) * risks + 1.0 / (m + 1) <= alpha)
        if feasible.size:
            chosen = float(candidates[feasible[0]])
        else:
            reason = (
                f"no threshold keeps {LOSS_WORDS['all']} under {alpha:.1%} with {m} "
                f"{'babies' if cal.per_subject else 'frames'} (CRC needs alpha >= 1/({m}+1) at the very least)"
            )
    return _guarantee(cal, method="crc", loss="all", alpha=alpha, delta=None, chosen=chosen, reason=reason)


def ltt_threshold(
    *,
    p_pain: Sequence[float],
    labels: Sequence[int],
    alpha: float,
    delta: float = DEFAULT_DELTA,
    loss: str = "auto",
    subjects: Sequence[Any] | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
) -> Guarantee:
    """Learn-then-Test: fixed-sequence testing down a grid fixed in advance (see the module doc).

    Frames as units: exact binomial p-values (``"auto"``: on the automatic frames, conditional on
    how many there are). Babies as units: Hoeffding-Bentkus on each baby's mean loss; for
    ``"auto"`` the loss is ``1[missed] - alpha * 1[automatic] + alpha`` averaged over the baby's
    frames, whose mean exceeds alpha exactly when the rate among automatic verdicts does.
    """
    _check_options(alpha, delta, loss)
    thresholds = sorted({float(t) for t in grid}, reverse=True)
    if not thresholds or thresholds[-1] < 0.5 or thresholds[0] > 1.0:
        raise CalibrationError("the LTT grid must hold thresholds in [0.5, 1]")
    cal = calibration_set(p_pain=p_pain, labels=labels, subjects=subjects)
    reason = _too_few(cal, min_subjects)
    chosen: float | None = None
    if not reason:
        conf = cal.confidence
        miss = cal.miss_if_auto
        for t in thresholds:
            auto = conf >= t
            if not cal.per_subject:
                if loss == "all":
                    p_value = binomial_pvalue(losses=int(np.sum(miss & auto)), n=cal.n_units, alpha=alpha)
                else:
                    p_value = binomial_pvalue(losses=int(np.sum(miss & auto)), n=int(auto.sum()), alpha=alpha)
            else:
                frame_loss = (miss & auto).astype(np.float64)
                if loss == "auto":
                    frame_loss = frame_loss - alpha * auto + alpha
                per_unit = np.bincount(cal.units, weights=frame_loss, minlength=cal.n_units) / np.bincount(
                    cal.units, minlength=cal.n_units
                )
                p_value = hoeffding_bentkus_pvalue(mean=float(per_unit.mean()), n=cal.n_units, alpha=alpha)
            if p_value > delta:
                break
            chosen = t
        if chosen is None:
            reason = (
                f"the most conservative threshold on the grid ({thresholds[0]:.2f}) could not be shown to keep "
                f"{LOSS_WORDS[loss]} under {alpha:.1%} with {1 - delta:.0%} confidence"
            )
    return _guarantee(cal, method="ltt", loss=loss, alpha=alpha, delta=delta, chosen=chosen, reason=reason)


def _guarantee(
    cal: CalibrationSet, *, method: str, loss: str, alpha: float, delta: float | None, chosen: float | None, reason: str
) -> Guarantee:
    all_to_nurse = chosen is None
    threshold = 1.0 if chosen is None else chosen
    conf = cal.confidence
    auto = conf >= threshold if not all_to_nurse else np.zeros(conf.size, dtype=bool)
    missed = cal.miss_if_auto & auto
    n = int(conf.size)
    n_auto = int(auto.sum())
    manual_share = 1.0 - n_auto / n if n else 1.0
    result = Guarantee(
        method=method,
        loss=loss,
        alpha=float(alpha),
        delta=None if delta is None else float(delta),
        threshold=float(threshold),
        all_to_nurse=all_to_nurse,
        reason=reason,
        n_frames=n,
        n_subjects=cal.n_units if cal.per_subject else 0,
        per_subject=cal.per_subject,
        manual_share=float(manual_share),
        missed_pain_all=float(missed.mean()) if n else 0.0,
        missed_pain_auto=float(missed.sum() / n_auto) if n_auto else None,
        statement="",
    )
    return Guarantee(**{**result.as_dict(), "statement": guarantee_statement(result)})


def guarantee_statement(g: Guarantee) -> str:
    """What is guaranteed, in plain words, with the loss named and the rate among automatic verdicts beside it."""
    units = f"{g.n_subjects} babies ({g.n_frames} frames)" if g.per_subject else f"{g.n_frames} frames"
    if g.all_to_nurse:
        return f"No threshold is guaranteed: {g.reason}. Every frame should go to a nurse."
    auto_rate = "no automatic verdicts" if g.missed_pain_auto is None else f"{g.missed_pain_auto:.1%}"
    beside = (
        f"On the calibration data: {g.manual_share:.0%} of frames to a nurse; missed pain {g.missed_pain_all:.1%} "
        f"of all frames, {auto_rate} among automatic verdicts."
    )
    unit = "a new baby's frames" if g.per_subject else "frames"
    if g.method == "crc":
        promise = (
            f"At threshold {g.threshold:.3f}, on average at most {g.alpha:.1%} of {unit} are a baby in pain the model "
            f"called 'no pain' without asking a nurse ({LOSS_WORDS['all']}; conformal risk control on {units}). "
            "'On average' is over which frames were used to set it: a particular week can be worse."
        )
    else:
        promise = (
            f"At threshold {g.threshold:.3f}, with {1 - (g.delta or 0):.0%} confidence, {LOSS_WORDS[g.loss]} is at "
            f"most {g.alpha:.1%} (Learn-then-Test on {units}, thresholds fixed in advance)."
        )
    return (
        f"{promise} {beside} It assumes future babies resemble the calibration babies (same unit, cameras, kind of "
        "patients) and that the calibration frames are a random sample, not only those the model was unsure "
        "about, and takes the nurses' NIPS verdict as the truth."
    )


def calibrate(
    *,
    p_pain: Sequence[float],
    labels: Sequence[int],
    alpha: float,
    delta: float = DEFAULT_DELTA,
    loss: str = "all",
    subjects: Sequence[Any] | None = None,
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
    grid: Sequence[float] = DEFAULT_GRID,
) -> dict[str, Any]:
    """Both guarantees on the same data: ``{"crc": ..., "ltt": ..., "n_frames", "n_subjects", ...}``.

    What ``manage.py calibrate_threshold`` prints and what a model's stored calibration scores
    are recomputed with when the unit changes alpha.
    """
    crc = crc_threshold(p_pain=p_pain, labels=labels, alpha=alpha, subjects=subjects, min_subjects=min_subjects)
    ltt = ltt_threshold(
        p_pain=p_pain,
        labels=labels,
        alpha=alpha,
        delta=delta,
        loss=loss,
        subjects=subjects,
        grid=grid,
        min_subjects=min_subjects,
    )
    return {
        "alpha": float(alpha),
        "delta": float(delta),
        "loss": loss,
        "n_frames": crc.n_frames,
        "n_subjects": crc.n_subjects,
        "min_subjects": int(min_subjects),
        "crc": crc.as_dict(),
        "ltt": ltt.as_dict(),
    }
