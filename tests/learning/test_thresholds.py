"""Threshold analysis: the paper's table, risk-coverage, calibration and the guaranteed threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference import thresholds as th
from tests.learning.conftest import assert_threshold_figures


def _synthetic_scores(rng, n, *, prevalence=0.35, separation=1.5, spread=1.5):
    """A score model with overlap: pain logits ~ N(+sep, spread), nonpain ~ N(-sep, spread)."""
    y = (rng.random(n) < prevalence).astype(np.int64)
    z = rng.normal(np.where(y == 1, separation, -separation), spread)
    return 1.0 / (1.0 + np.exp(-z)), y


def test_it_counts_nurse_routed_cases_as_correct_in_framework_accuracy():
    # Confidences: 0.9 (right), 0.8 (wrong), 0.52 (wrong, goes to nurse at 0.55), 0.7 (right).
    p_pain = [0.9, 0.2, 0.52, 0.3]
    labels = [1, 1, 0, 0]
    rows = {r["threshold"]: r for r in th.threshold_table(p_pain=p_pain, labels=labels, thresholds=[0.5, 0.55, 0.85])}
    assert rows[0.5]["accuracy"] == pytest.approx(2 / 4) and rows[0.5]["manual"] == 0
    assert rows[0.55]["accuracy"] == pytest.approx(3 / 4) and rows[0.55]["manual"] == 1
    # At 0.85 only the 0.9 case is automatic: 3 to the nurse (counted correct) + 1 right.
    assert rows[0.85]["accuracy"] == pytest.approx(1.0) and rows[0.85]["manual"] == 3
    assert rows[0.5]["missed_pain"] == 1  # the pain case decided automatically as nonpain (p=0.2)


def test_it_sends_more_cases_to_nurses_as_the_threshold_rises():
    rng = np.random.default_rng(3)
    p, y = _synthetic_scores(rng, 500)
    grid = np.round(np.arange(0.5, 1.0, 0.01), 2)
    rows = th.threshold_table(p_pain=p, labels=y, thresholds=grid)
    manual = [r["manual"] for r in rows]
    assert manual == sorted(manual) and manual[-1] > manual[0]
    assert all(r["n"] == 500 for r in rows)
    # The case routed at exactly the threshold is automatic (confidence >= threshold).
    assert th.threshold_table(p_pain=[0.6], labels=[1], thresholds=[0.6])[0]["manual"] == 0


def test_auc_matches_the_pairwise_definition_with_ties():
    p = np.array([0.1, 0.4, 0.4, 0.8, 0.35, 0.9])
    y = np.array([0, 0, 1, 1, 0, 1])
    pairs = [(a, b) for a in p[y == 1] for b in p[y == 0]]
    expected = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert th.roc_auc(p_pain=p, labels=y) == pytest.approx(expected)
    assert th.roc_auc(p_pain=[0.2, 0.3], labels=[1, 1]) is None


def test_cohen_kappa_known_values():
    # Classic 2x2: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4.
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert th.cohen_kappa(a, b) == pytest.approx(0.4)
    assert th.cohen_kappa([True, False], [True, False]) == pytest.approx(1.0)
    assert th.cohen_kappa([], []) is None


def test_risk_coverage_and_aurc():
    # Perfect ranking (the error is the least confident case): AURC is the small tail term.
    p = np.array([0.99, 0.95, 0.9, 0.8, 0.55])
    y = np.array([1, 1, 1, 1, 0])
    curve = th.risk_coverage_curve(p_pain=p, labels=y)
    assert curve[-1] == {"coverage": 1.0, "risk": pytest.approx(0.2), "threshold": pytest.approx(0.55)}
    assert [c["coverage"] for c in curve] == sorted(c["coverage"] for c in curve)
    assert th.aurc(p_pain=p, labels=y) == pytest.approx(0.2 / 5)
    # The same error at the top of the ranking costs much more.
    worse = th.aurc(p_pain=np.array([0.01, 0.95, 0.9, 0.8, 0.55]), labels=np.array([1, 1, 1, 1, 1]))
    assert worse > 0.2


def test_temperature_scaling_lowers_ece_on_an_overconfident_model():
    rng = np.random.default_rng(7)
    true_p = rng.uniform(0.02, 0.98, 4000)
    y = (rng.random(4000) < true_p).astype(int)
    overconfident = 1 / (1 + np.exp(-3.0 * th.logit_of(true_p)))  # logits x3
    t = th.temperature_fit(p_pain=overconfident[:2000], labels=y[:2000])
    assert t == pytest.approx(3.0, rel=0.15)
    before = th.expected_calibration_error(p_pain=overconfident[2000:], labels=y[2000:])
    after = th.expected_calibration_error(p_pain=th.temperature_apply(overconfident[2000:], t), labels=y[2000:])
    assert before > 0.1 and after < before / 3
    # Ranking is unchanged, so AUC and the routing order are too.
    assert th.roc_auc(p_pain=overconfident, labels=y) == pytest.approx(
        th.roc_auc(p_pain=th.temperature_apply(overconfident, t), labels=y)
    )


def test_missed_pain_loss_never_increases_with_the_threshold():
    rng = np.random.default_rng(11)
    p, y = _synthetic_scores(rng, 300)
    losses = [th.missed_pain_loss(p_pain=p, labels=y, threshold=t).sum() for t in np.linspace(0.5, 1.0, 51)]
    assert all(a >= b for a, b in zip(losses, losses[1:]))


def test_guaranteed_threshold_is_the_lowest_one_meeting_the_corrected_bound():
    rng = np.random.default_rng(5)
    p, y = _synthetic_scores(rng, 200)
    alpha = 0.03
    g = th.guaranteed_threshold(p_pain=p, labels=y, alpha=alpha)
    n = 200

    def bound(t):
        return n / (n + 1) * th.missed_pain_loss(p_pain=p, labels=y, threshold=t).mean() + 1 / (n + 1)

    assert bound(g["threshold"]) <= alpha
    lower = [t for t in np.unique(np.maximum(p, 1 - p)) if t < g["threshold"]]
    assert lower and bound(max(lower)) > alpha
    assert g["method"] == "conformal-risk-control" and g["n_calibration"] == n
    assert 0 < g["expected_manual_share"] < 1
    # Unachievable alpha (below 1/(n+1)): every case to a nurse.
    assert th.guaranteed_threshold(p_pain=p, labels=y, alpha=0.001)["all_to_nurse"] is True


def _naive_threshold(p, y, alpha):
    """The lowest threshold whose *empirical* missed-pain rate is <= alpha (no finite-sample correction)."""
    conf = np.maximum(p, 1 - p)
    miss = (p < 0.5) & (y == 1)
    for t in np.unique(np.concatenate(([0.5], conf[conf >= 0.5]))):
        if np.mean(miss & (conf >= t)) <= alpha:
            return t
    return 1.0


def test_the_crc_guarantee_holds_in_simulation():
    """Missed pain on fresh frames averages <= alpha over calibration draws, and not far below.

    Conformal risk control (Angelopoulos et al. 2022, Thm 1 and 2): with exchangeable data,
    alpha - 2/(n+1) <= E[loss on a new frame] <= alpha. The guarantee is in expectation:
    single trials' realised rates scatter around that mean, so a sizeable share of trials
    exceed alpha; a single fresh frame is missed pain with probability <= alpha. The naive
    plug-in threshold, without the n/(n+1) and 1/(n+1) correction, overshoots alpha.
    """
    rng = np.random.default_rng(2024)
    n_cal, n_test, trials, alpha = 200, 1000, 1500, 0.03
    realised, naive, single_misses = [], [], 0
    for _ in range(trials):
        p_cal, y_cal = _synthetic_scores(rng, n_cal)
        t = th.guaranteed_threshold(p_pain=p_cal, labels=y_cal, alpha=alpha)["threshold"]
        p_test, y_test = _synthetic_scores(rng, n_test)
        loss = th.missed_pain_loss(p_pain=p_test, labels=y_test, threshold=t)
        realised.append(loss.mean())
        naive.append(
            th.missed_pain_loss(p_pain=p_test, labels=y_test, threshold=_naive_threshold(p_cal, y_cal, alpha)).mean()
        )
        single_misses += int(loss[0])
    realised = np.array(realised)
    mean = float(realised.mean())
    standard_error = float(realised.std() / math.sqrt(trials))
    assert alpha - 2 / (n_cal + 1) - 3 * standard_error <= mean <= alpha + 3 * standard_error
    # One new frame per trial: a Bernoulli frequency <= alpha (3 binomial sds of slack).
    assert single_misses / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    # In expectation, not per draw: some calibration sets give a test-set rate above alpha.
    assert 0.1 < float(np.mean(realised > alpha)) < 0.6
    assert float(np.mean(naive)) > alpha + 3 * standard_error


def test_the_ltt_guarantee_bounds_the_rate_among_automatic_verdicts_with_high_probability():
    """Learn-then-Test: P(missed-pain rate among automatic verdicts > alpha) <= delta."""
    rng = np.random.default_rng(99)
    p_ref, y_ref = _synthetic_scores(rng, 400_000)
    conf_ref = np.maximum(p_ref, 1 - p_ref)
    miss_ref = (p_ref < 0.5) & (y_ref == 1)

    def true_rate_among_auto(t):
        auto = conf_ref >= t
        return miss_ref[auto].mean() if auto.any() else 0.0

    alpha, delta, trials = 0.05, 0.1, 300
    violations = 0
    for _ in range(trials):
        p, y = _synthetic_scores(rng, 500)
        g = th.guaranteed_threshold(p_pain=p, labels=y, alpha=alpha, method="ltt", delta=delta)
        violations += true_rate_among_auto(g["threshold"]) > alpha
    assert violations / trials <= delta + 3 * math.sqrt(delta * (1 - delta) / trials)


def test_threshold_analysis_has_the_keys_the_admin_page_draws(tmp_path):
    rng = np.random.default_rng(1)
    p, y = _synthetic_scores(rng, 120)
    analysis = th.threshold_analysis(p_pain=p, labels=y, alpha=0.05)
    assert_threshold_figures(analysis)
    assert {"threshold", "accuracy", "manual", "n"} <= set(analysis["thresholds"][0])
    assert {"coverage", "risk"} <= set(analysis["risk_coverage"][0])
    for suffix in (".png", ".svg"):
        path = th.plot_threshold_analysis(p_pain=p, labels=y, path=tmp_path / f"plot{suffix}", title="t")
        assert path.stat().st_size > 1000
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "plot.svg").read_bytes()[:500]


def test_the_stored_risk_coverage_curve_has_at_most_101_points():
    rng = np.random.default_rng(2)
    p, y = _synthetic_scores(rng, 1000)
    full = th.risk_coverage_curve(p_pain=p, labels=y)
    assert len(full) > 900  # one point per distinct confidence
    stored = th.threshold_analysis(p_pain=p, labels=y)["risk_coverage"]
    assert len(stored) == th.RISK_COVERAGE_POINTS == 101
    assert stored[0] == full[0] and stored[-1] == full[-1]
    assert all(point in full for point in stored)
    assert [c["coverage"] for c in stored] == sorted(c["coverage"] for c in stored)
    # AURC still uses every frame: it is the same with the curve thinned.
    assert th.threshold_analysis(p_pain=p, labels=y)["aurc"] == th.aurc(p_pain=p, labels=y)
    small = th.risk_coverage_curve(p_pain=p[:50], labels=y[:50], max_points=101)
    assert small == th.risk_coverage_curve(p_pain=p[:50], labels=y[:50])


def test_balanced_accuracy_does_not_reward_calling_everything_nonpain():
    y = np.array([1] * 3 + [0] * 7)
    always_nonpain = th.binary_metrics(p_pain=np.full(10, 0.2), labels=y)
    assert always_nonpain["accuracy"] == pytest.approx(0.7)
    assert always_nonpain["balanced_accuracy"] == pytest.approx(0.5)
    p = np.array([0.9, 0.9, 0.1] + [0.1] * 6 + [0.9])
    assert th.binary_metrics(p_pain=p, labels=y)["balanced_accuracy"] == pytest.approx((2 / 3 + 6 / 7) / 2)
    # One class only: that class's recall.
    assert th.binary_metrics(p_pain=[0.2, 0.7], labels=[0, 0])["balanced_accuracy"] == pytest.approx(0.5)


def test_the_plot_shows_the_spread_over_subjects(tmp_path):
    rng = np.random.default_rng(3)
    p, y = _synthetic_scores(rng, 60)
    subjects = [f"s{k % 4}" for k in range(60)]
    with_spread = th.plot_threshold_analysis(p_pain=p, labels=y, subjects=subjects, path=tmp_path / "spread.svg")
    without = th.plot_threshold_analysis(p_pain=p, labels=y, path=tmp_path / "plain.svg")
    # A fourth panel: the figure is 20 inches wide instead of 15 (72 pt each).
    assert 'width="1440pt"' in with_spread.read_text()[:2000]
    assert 'width="1080pt"' in without.read_text()[:2000]
    with pytest.raises(ValueError, match="subjects must name every frame"):
        th.plot_threshold_analysis(p_pain=p, labels=y, subjects=subjects[:10], path=tmp_path / "bad.svg")


def test_subject_summary_averages_auc_over_subjects_with_both_classes():
    from inference.training import per_subject_accuracy, subject_summary

    p = np.array([0.9, 0.2, 0.6, 0.7, 0.3, 0.4, 0.8, 0.1])
    y = np.array([1, 0, 0, 1, 0, 0, 0, 0])
    subjects = ["a", "a", "b", "b", "b", "c", "c", "c"]
    rows = per_subject_accuracy(p, y, subjects)
    assert [r["auc"] for r in rows] == [1.0, 1.0, None]
    assert {"sensitivity", "specificity", "balanced_accuracy"} <= set(rows[0])
    summary = subject_summary(rows)
    assert summary["auc_mean"] == 1.0 and summary["auc_subjects"] == 2
    # Subject c has no pain: its balanced accuracy is its specificity (2 of 3 right).
    assert rows[2]["balanced_accuracy"] == pytest.approx(2 / 3)
    assert summary["balanced_accuracy_mean"] == pytest.approx((1.0 + (1 + 0.5) / 2 + 2 / 3) / 3)
    assert summary["per_subject_accuracy"] == {"a": 1.0, "b": 2 / 3, "c": 2 / 3}
