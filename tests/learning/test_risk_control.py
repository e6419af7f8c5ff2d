"""The guarantees of inference.thresholds.risk_control: useful on separable scores, and they hold in simulation.

The simulations are seeded and sized to run in a few seconds (300 calibration draws each); the
"truth" at a threshold is computed on a large reference population drawn once.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.thresholds import risk_control as cb

ALPHA, DELTA, DRAWS = 0.05, 0.1, 300


def _frames(rng: np.random.Generator, n: int, *, separation: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Independent frames: 30% pain, logit score +-separation plus noise of sd 2 (classes overlap:
    at 0.5, 6.8% of all frames are missed pain; the rate among automatic verdicts falls to ~1.6% at 0.95)."""
    y = (rng.random(n) < 0.3).astype(int)
    logit = separation * (2 * y - 1) + rng.normal(0, 2.0, n)
    return 1 / (1 + np.exp(-logit)), y


def _babies(
    rng: np.random.Generator, n_babies: int, frames: tuple[int, int] = (5, 40)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered frames: each baby has its own pain prevalence and a score offset the model gets wrong."""
    counts = rng.integers(frames[0], frames[1] + 1, n_babies) if frames[0] < frames[1] else np.full(n_babies, frames[0])
    subject = np.repeat(np.arange(n_babies), counts)
    prevalence = rng.beta(2, 4, n_babies)[subject]
    offset = rng.normal(0, 1.0, n_babies)[subject]
    y = (rng.random(subject.size) < prevalence).astype(int)
    logit = 1.5 * (2 * y - 1) + offset + rng.normal(0, 1.7, subject.size)
    return 1 / (1 + np.exp(-logit)), y, subject


class _Truth:
    """Risk at a threshold on a large reference population; baby-weighted when subjects are given."""

    def __init__(self, p: np.ndarray, y: np.ndarray, subject: np.ndarray | None = None) -> None:
        self.conf = np.maximum(p, 1 - p)
        self.miss = (p < 0.5) & (y == 1)
        self.subject = subject

    def _per_unit_mean(self, values: np.ndarray) -> float:
        if self.subject is None:
            return float(values.mean())
        sums = np.bincount(self.subject, weights=values.astype(float))
        return float((sums / np.bincount(self.subject)).mean())

    def all_frames(self, t: float) -> float:
        return self._per_unit_mean(self.miss & (self.conf >= t))

    def among_auto(self, t: float) -> float:
        auto = self.conf >= t
        share = self._per_unit_mean(auto)
        return self._per_unit_mean(self.miss & auto) / share if share else 0.0


def _slack(rate: float) -> float:
    """Three binomial standard deviations of a frequency over DRAWS draws."""
    return 3 * math.sqrt(rate * (1 - rate) / DRAWS)


def test_well_separated_scores_give_a_useful_threshold() -> None:
    p, y = _frames(np.random.default_rng(1), 500, separation=3.0)
    for loss in cb.LOSSES:
        ltt = cb.ltt_threshold(p_pain=p, labels=y, alpha=0.1, delta=DELTA, loss=loss)
        assert not ltt.all_to_nurse, ltt.reason
        assert 0.5 <= ltt.threshold < 0.95 and ltt.manual_share < 0.5
    crc = cb.crc_threshold(p_pain=p, labels=y, alpha=0.1)
    assert not crc.all_to_nurse and crc.manual_share < 0.5
    assert "missed pain among all frames" in crc.statement and "among automatic verdicts" in crc.statement


def test_ltt_tests_the_grid_from_the_most_conservative_threshold_down() -> None:
    """The chosen threshold is the last of an unbroken run of rejections from 0.95 down."""
    p, y = _frames(np.random.default_rng(3), 1000)
    chosen = cb.ltt_threshold(p_pain=p, labels=y, alpha=0.05, loss="auto").threshold
    assert 0.5 < chosen < 0.95, "this draw stops inside the grid"
    conf, miss = np.maximum(p, 1 - p), (p < 0.5) & (y == 1)

    def p_value(t: float) -> float:
        auto = conf >= t
        return cb.binomial_pvalue(losses=int((miss & auto).sum()), n=int(auto.sum()), alpha=0.05)

    assert all(p_value(t) <= DELTA for t in cb.DEFAULT_GRID if t >= chosen)
    assert p_value(max(t for t in cb.DEFAULT_GRID if t < chosen)) > DELTA


def test_both_guarantees_hold_for_independent_frames() -> None:
    rng = np.random.default_rng(2026)
    truth = _Truth(*_frames(rng, 400_000))
    crc_risk, ltt_auto_violations, ltt_all_violations, useful_auto, useful_all = [], 0, 0, 0, 0
    for _ in range(DRAWS):
        p, y = _frames(rng, 500)
        crc = cb.crc_threshold(p_pain=p, labels=y, alpha=ALPHA)
        crc_risk.append(truth.all_frames(crc.threshold) if not crc.all_to_nurse else 0.0)
        auto = cb.ltt_threshold(p_pain=p, labels=y, alpha=ALPHA, delta=DELTA, loss="auto")
        ltt_auto_violations += (not auto.all_to_nurse) and truth.among_auto(auto.threshold) > ALPHA
        useful_auto += not auto.all_to_nurse
        every = cb.ltt_threshold(p_pain=p, labels=y, alpha=ALPHA, delta=DELTA, loss="all")
        ltt_all_violations += (not every.all_to_nurse) and truth.all_frames(every.threshold) > ALPHA
        useful_all += not every.all_to_nurse
    mean = float(np.mean(crc_risk))
    assert mean <= ALPHA + 3 * float(np.std(crc_risk)) / math.sqrt(DRAWS)
    assert mean >= ALPHA - 2 / 501 - 0.01, "CRC is not needlessly conservative"
    assert ltt_auto_violations / DRAWS <= DELTA + _slack(DELTA)
    assert ltt_all_violations / DRAWS <= DELTA + _slack(DELTA)
    # Not vacuous: LTT certifies a threshold on most draws rather than sending everything to a nurse.
    assert useful_all / DRAWS > 0.9 and useful_auto / DRAWS > 0.5


def test_both_guarantees_hold_per_baby_on_clustered_frames() -> None:
    """150 babies of 5-40 frames, each with its own prevalence and score offset: the guarantees are per baby."""
    rng = np.random.default_rng(15)
    truth = _Truth(*_babies(rng, 4000, frames=(50, 50)))
    crc_risk, all_violations, auto_violations, useful = [], 0, 0, 0
    for _ in range(DRAWS):
        p, y, subject = _babies(rng, 150)
        crc = cb.crc_threshold(p_pain=p, labels=y, alpha=ALPHA, subjects=subject)
        assert crc.n_subjects == 150 and crc.per_subject
        crc_risk.append(truth.all_frames(crc.threshold) if not crc.all_to_nurse else 0.0)
        every = cb.ltt_threshold(p_pain=p, labels=y, alpha=ALPHA, delta=DELTA, loss="all", subjects=subject)
        all_violations += (not every.all_to_nurse) and truth.all_frames(every.threshold) > ALPHA
        useful += not every.all_to_nurse
        auto = cb.ltt_threshold(p_pain=p, labels=y, alpha=ALPHA, delta=DELTA, loss="auto", subjects=subject)
        auto_violations += (not auto.all_to_nurse) and truth.among_auto(auto.threshold) > ALPHA
    assert float(np.mean(crc_risk)) <= ALPHA + 3 * float(np.std(crc_risk)) / math.sqrt(DRAWS)
    assert float(np.mean(crc_risk)) > ALPHA / 2, "per-baby CRC is not needlessly conservative"
    assert all_violations / DRAWS <= DELTA + _slack(DELTA) and useful / DRAWS > 0.9
    assert auto_violations / DRAWS <= DELTA + _slack(DELTA)


def test_one_baby_with_many_frames_cannot_dominate() -> None:
    """Twenty babies: one with 200 frames all missed pain at any threshold, nineteen with one clean frame each."""
    p = np.concatenate((np.full(200, 0.2), np.full(19, 0.9)))
    y = np.concatenate((np.ones(200, int), np.ones(19, int)))
    subjects = ["big"] * 200 + [f"b{k}" for k in range(19)]
    frame_level = cb.crc_threshold(p_pain=p, labels=y, alpha=0.1)
    per_baby = cb.crc_threshold(p_pain=p, labels=y, alpha=0.1, subjects=subjects)
    cal = cb.calibration_set(p_pain=p, labels=y, subjects=subjects)
    assert math.isclose(float(cal.weights[:200].sum()), 1 / 20)
    # Per baby, the big baby's automatic misses weigh 1/20: 20/21 * 1/20 + 1/21 = 0.095 <= 0.1 already at 0.5.
    assert per_baby.threshold == 0.5 and not per_baby.all_to_nurse
    # Frame by frame the big baby is 200 of 219 frames: its frames must all go to a nurse.
    assert frame_level.threshold > 0.8


def test_too_few_babies_gives_no_threshold_and_says_so() -> None:
    p, y, subject = _babies(np.random.default_rng(0), 3)
    for result in (
        cb.crc_threshold(p_pain=p, labels=y, alpha=0.1, subjects=subject),
        cb.ltt_threshold(p_pain=p, labels=y, alpha=0.1, subjects=subject),
    ):
        assert result.all_to_nurse and result.threshold == 1.0
        assert "only 3 babies" in result.reason and "at least 10" in result.reason
        assert "No threshold is guaranteed" in result.statement


def test_crc_refuses_an_alpha_its_sample_cannot_reach() -> None:
    p, y = _frames(np.random.default_rng(0), 30)
    result = cb.crc_threshold(p_pain=p, labels=y, alpha=0.02)
    assert result.all_to_nurse and "1/(30+1)" in result.reason


def test_p_values() -> None:
    assert math.isclose(cb.binomial_cdf(5, 10, 0.5), 638 / 1024)
    assert cb.binomial_cdf(-1, 10, 0.5) == 0.0 and cb.binomial_cdf(10, 10, 0.5) == 1.0
    assert math.isclose(cb.binomial_pvalue(losses=0, n=100, alpha=0.05), 0.95**100)
    assert cb.binomial_pvalue(losses=0, n=0, alpha=0.05) == 1.0
    # Hoeffding-Bentkus: 1 at or above alpha's bound, small for a clearly lower mean, monotone in n.
    assert cb.hoeffding_bentkus_pvalue(mean=0.2, n=50, alpha=0.1) == 1.0
    small = [cb.hoeffding_bentkus_pvalue(mean=0.0, n=n, alpha=0.1) for n in (10, 30, 100)]
    assert small[0] > small[1] > small[2] and small[2] < 1e-4


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"p_pain": [0.2, 1.5], "labels": [0, 1]}, "probabilities"),
        ({"p_pain": [0.2, 0.4], "labels": [0, 2]}, "labels must be 0"),
        ({"p_pain": [0.2], "labels": [0, 1]}, "same length"),
        ({"p_pain": [0.2, 0.4], "labels": [0, 1], "subjects": ["a"]}, "one baby per frame"),
        ({"p_pain": [0.2, 0.4], "labels": [0, 1], "subjects": ["a", ""]}, "needs its baby"),
        ({"p_pain": [0.2, 0.4], "labels": [0, 1], "alpha": 0.0}, "alpha must be"),
        ({"p_pain": [0.2, 0.4], "labels": [0, 1], "delta": 1.0}, "delta must be"),
        ({"p_pain": [0.2, 0.4], "labels": [0, 1], "loss": "some"}, "loss must be"),
    ],
)
def test_bad_calibration_input_raises_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(cb.CalibrationError, match=message):
        cb.calibrate(**{"alpha": 0.1, **kwargs})


def test_calibrate_reports_both_guarantees() -> None:
    p, y, subject = _babies(np.random.default_rng(4), 30)
    report = cb.calibrate(p_pain=p, labels=y, alpha=0.1, subjects=subject, loss="auto")
    assert report["n_subjects"] == 30 and report["n_frames"] == len(p)
    assert report["crc"]["loss"] == "all" and report["ltt"]["loss"] == "auto"
    assert report["crc"]["method"] == "crc" and report["ltt"]["delta"] == 0.1
