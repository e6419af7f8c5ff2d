"""The settings page tells the truth (issue 13, item 6): routing of the active model, sample sizes, no safe threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.selectors import threshold_workload_estimate
from annotations.views.unit_settings import guarantee_context, sample_accuracy, threshold_rows
from inference.thresholds import wilson_interval
from tests.factories import FrameFactory, ModelVersionFactory, PredictionFactory
from triage.models import UnitSettings

pytestmark = pytest.mark.django_db


def _predictions(neonate, model, p_pains, *, threshold=0.55, hours_ago=2):
    at = timezone.now() - timedelta(hours=hours_ago)
    for p in p_pains:
        PredictionFactory(
            frame=FrameFactory(neonate=neonate), model_version=model, p_pain=p, threshold=threshold, created_at=at
        )


def test_wilson_interval_of_16_right_of_16_is_not_100_percent():
    low, high = wilson_interval(16, 16)
    assert low == pytest.approx(0.806, abs=0.001) and high == 1.0
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and high == pytest.approx(0.434, abs=0.001)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_a_bootstrap_model_sends_every_frame_to_nurses_at_every_threshold(unit, neonate):
    bootstrap = ModelVersionFactory(unit=None, is_bootstrap=True)
    # Confident scores: a plain threshold count would send almost none of them to a nurse.
    _predictions(neonate, bootstrap, [0.97, 0.03, 0.99, 0.95, 0.52])
    for p in PredictionFactory._meta.model.objects.all():
        p.routed_to = "nurse"  # what prediction_route did: the bootstrap never decides alone
        p.save(update_fields=["routed_to"])

    estimate = threshold_workload_estimate(unit=unit, model_version=bootstrap, audit_share=0.05)

    assert estimate["never_auto"] and estimate["source"] == "active"
    assert {r["nurse_share"] for r in estimate["rows"]} == {1.0}
    assert {r["auto_pain_per_day"] for r in estimate["rows"]} == {0.0}
    assert estimate["actual_nurse_share"] == 1.0


def test_the_estimate_uses_the_active_models_predictions_and_adds_the_audit_share(unit, neonate):
    old = ModelVersionFactory(unit=None, status="retired")
    active = ModelVersionFactory(unit=None)
    _predictions(neonate, old, [0.52, 0.53, 0.54, 0.51])  # all unsure under the old model
    _predictions(neonate, active, [0.97, 0.02, 0.60, 0.52])  # confidences 0.97, 0.98, 0.60, 0.52

    estimate = threshold_workload_estimate(unit=unit, model_version=active, audit_share=0.10)

    assert estimate["source"] == "active" and estimate["n"] == 4
    by_t = {r["threshold"]: r for r in estimate["rows"]}
    # At 0.55: one below (0.52), three automatic of which 10% are audit cases -> 1.3 nurse cases of 4.
    assert by_t[0.55]["nurse_share"] == pytest.approx((1 + 3 * 0.10) / 4)
    # At 0.95: two below (0.60, 0.52), two automatic (0.97 pain, 0.98 no pain).
    assert by_t[0.95]["nurse_share"] == pytest.approx((2 + 2 * 0.10) / 4)
    assert by_t[0.95]["auto_pain_per_day"] == pytest.approx(1 / estimate["days"])


def test_without_predictions_of_the_active_model_the_estimate_says_it_uses_earlier_ones(unit, neonate):
    old = ModelVersionFactory(unit=None, status="retired")
    active = ModelVersionFactory(unit=None)
    _predictions(neonate, old, [0.9, 0.1])

    estimate = threshold_workload_estimate(unit=unit, model_version=active)

    assert estimate["source"] == "all" and estimate["n"] == 2


def test_settings_page_shows_bootstrap_routing_and_the_actual_share(browser_for, unit_admin, neonate):
    bootstrap = ModelVersionFactory(unit=None, is_bootstrap=True, name="bootstrap-affectnet")
    _predictions(neonate, bootstrap, [0.97, 0.03, 0.99])
    PredictionFactory._meta.model.objects.update(routed_to="nurse")

    page = browser_for(unit_admin).get("/unit/settings/").content.decode()

    assert 'data-testid="never-auto"' in page and "Every frame goes to a nurse at every threshold" in page
    assert "Actually sent to nurses in this window: <strong>100%</strong> of 3 frames" in page
    assert "5%" not in page.split('id="price-title"')[1].split("</table>")[0]


def test_accuracy_is_shown_with_its_sample_size_and_interval():
    rows = sample_accuracy({"accuracy": 1.0, "sensitivity": 1.0, "specificity": 1.0, "n": 16, "n_pain": 6})
    accuracy = rows[0]
    assert accuracy["ci"]["n"] == 16 and accuracy["ci"]["low"] == pytest.approx(0.806, abs=0.001)
    assert [r["ci"]["n"] for r in rows] == [16, 6, 10]
    table = threshold_rows(
        {"thresholds": [{"threshold": 0.9, "accuracy": 1.0, "auto_accuracy": 1.0, "manual": 12, "n": 16}]}, 0.9
    )
    assert table[0]["auto_ci"]["n"] == 4 and table[0]["auto_ci"]["low"] < 0.6


def test_settings_page_states_n_and_the_interval(browser_for, unit_admin):
    ModelVersionFactory(
        unit=None, metrics={"accuracy": 1.0, "sensitivity": 1.0, "specificity": 1.0, "n": 16, "n_pain": 6}
    )
    page = browser_for(unit_admin).get("/unit/settings/").content.decode()
    assert "100.0% of 16 frames (95% interval 81%–100%)" in page


@pytest.mark.parametrize(
    "guarantee",
    [
        {"alpha": 0.05, "threshold": 1.0, "n_calibration": 40, "delta": 0.1},
        {"alpha": 0.05, "threshold": None, "all_to_nurse": True, "reason": "too few frames", "n_calibration": 9},
    ],
)
def test_a_guaranteed_threshold_of_one_says_no_verdict_is_safe(browser_for, unit_admin, guarantee):
    assert guarantee_context({"guarantee": guarantee}, 0.55)["nothing_safe"]
    ModelVersionFactory(unit=None, metrics={"guarantee": guarantee})
    UnitSettings.objects.filter(unit=unit_admin.unit).update(threshold=1.0)

    page = browser_for(unit_admin).get("/unit/settings/").content.decode()

    assert "No automatic verdicts are safe yet: label more frames" in page
    assert "Covered:" not in page  # a threshold of 1.00 is not "covered" when nothing is safe


def test_a_real_guarantee_is_not_called_unsafe():
    context = guarantee_context({"guarantee": {"alpha": 0.05, "threshold": 0.72, "n_calibration": 412}}, 0.8)
    assert not context["nothing_safe"] and context["covers_current"]


def test_the_mean_over_folds_says_over_how_many_babies():
    from annotations.views.unit_settings import metric_rows

    rows = {
        r["key"]: r["value"] for r in metric_rows({"accuracy_mean": 0.9, "per_subject_accuracy": {"a": 1.0, "b": 0.8}})
    }
    assert rows["accuracy_mean"] == "90.0% over 2 babies"
