"""The ML engineer's models page (issue 13, item 11): models, evaluations, compare, activate; role-checked."""

from __future__ import annotations

import hashlib

import pytest

from annotations import model_live
from annotations.tasks import model_compare
from tests.factories import FrameFactory, ModelVersionFactory, PredictionFactory, TriageCaseFactory
from triage.models import AuditEvent, ModelVersion, TriageCase

pytestmark = pytest.mark.django_db


def html(response) -> str:
    return response.content.decode()


@pytest.fixture
def bundle_file(tmp_path):
    path = tmp_path / "candidate.pt"
    path.write_bytes(b"not really weights, but hashed like them")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_page_lists_models_with_n_and_interval(browser_for, ml_engineer):
    ModelVersionFactory(
        name="painnet", version="3", unit=None, metrics={"accuracy": 1.0, "n": 16, "n_pain": 5, "evaluation": "LOSO"}
    )
    ModelVersionFactory(
        name="painnet",
        version="4",
        status="candidate",
        unit=None,
        metrics={"guarantee": {"threshold": 1.0, "alpha": 0.05}},
    )

    page = html(browser_for(ml_engineer).get("/annotations/models/"))

    assert "painnet v3" in page and "painnet v4" in page
    assert '100.0% <span class="muted">(n = 16; 95% 81%–100%)' in page
    assert "none safe yet" in page


@pytest.mark.parametrize("who", ["nurse", "unit_admin", "device"])
def test_clinicians_and_devices_are_refused(request, browser_for, who):
    user = request.getfixturevalue(who)
    user = user.user if who == "device" else user
    assert browser_for(user).get("/annotations/models/").status_code == 403
    assert browser_for(None).get("/annotations/models/").status_code == 302


def test_activate_from_the_page_retires_the_previous_model_and_is_audited(browser_for, ml_engineer, bundle_file):
    old = ModelVersionFactory(unit=None, status="active")
    path, sha = bundle_file
    candidate = ModelVersionFactory(unit=None, status="candidate", bundle_path=str(path), sha256=sha)

    response = browser_for(ml_engineer).post(f"/annotations/models/{candidate.pk}/activate/", follow=True)

    candidate.refresh_from_db()
    old.refresh_from_db()
    assert candidate.status == "active" and old.status == "retired"
    assert "is now the active classifier" in html(response)
    assert AuditEvent.objects.filter(
        action="model.activated", object_id=str(candidate.pk), actor_username="mia"
    ).exists()


def test_a_bundle_that_changed_on_disk_is_not_activated(browser_for, ml_engineer, bundle_file):
    path, sha = bundle_file
    candidate = ModelVersionFactory(unit=None, status="candidate", bundle_path=str(path), sha256="0" * 64)

    page = html(browser_for(ml_engineer).post(f"/annotations/models/{candidate.pk}/activate/", follow=True))

    candidate.refresh_from_db()
    assert candidate.status == "candidate" and "not activated" in page


def test_compare_queues_a_celery_task_after_commit(browser_for, ml_engineer, django_capture_on_commit_callbacks):
    candidate = ModelVersionFactory(unit=None, status="candidate")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = browser_for(ml_engineer).post(f"/annotations/models/{candidate.pk}/compare/")
    assert response.status_code == 302 and len(callbacks) == 1
    assert AuditEvent.objects.filter(action="model.comparison_requested", object_id=str(candidate.pk)).exists()
    assert "Comparison queued" in html(browser_for(ml_engineer).get("/annotations/models/"))


def test_the_compare_task_stores_the_result_or_the_reason_it_failed(monkeypatch, ml_engineer):
    candidate = ModelVersionFactory(unit=None, status="candidate")
    result = {"n": 40, "n_excluded_training_images": 2, "verdict": "no significant difference", "models": {}}
    monkeypatch.setattr("annotations.model_comparison.models_compare", lambda **kwargs: result)

    model_compare(candidate.pk, ml_engineer.pk)

    candidate.refresh_from_db()
    assert candidate.metrics["comparison"]["verdict"] == "no significant difference"
    assert AuditEvent.objects.get(action="model.compared").actor_username == "mia"

    def broken(**kwargs):
        raise FileNotFoundError("bundle gone")

    monkeypatch.setattr("annotations.model_comparison.models_compare", broken)
    model_compare(candidate.pk, ml_engineer.pk)
    candidate.refresh_from_db()
    assert "bundle gone" in candidate.metrics["comparison"]["error"]
    assert model_compare(999999) == {"compared": False}


def _scored(frame, model, p_pain):
    return PredictionFactory(frame=frame, model_version=model, p_pain=p_pain)


def test_the_live_comparison_is_paired_on_nurse_labelled_frames(neonate):
    a = ModelVersionFactory(unit=None, status="retired")
    b = ModelVersionFactory(unit=None)
    # 7 frames both scored; a nurse decided 6, where A was right and B wrong; they agree on the seventh.
    for pa, pb, nurse_pain in [
        (0.9, 0.1, True),
        (0.9, 0.2, True),
        (0.1, 0.8, False),
        (0.2, 0.9, False),
        (0.8, 0.2, True),
        (0.7, 0.4, True),
        (0.3, 0.3, None),
    ]:
        frame = FrameFactory(neonate=neonate)
        prediction_a = _scored(frame, a, pa)
        _scored(frame, b, pb)
        if nurse_pain is not None:
            TriageCaseFactory(prediction=prediction_a, status=TriageCase.Status.DECIDED, final_pain=nurse_pain)
    _scored(FrameFactory(neonate=neonate), a, 0.9)  # scored by A only: not paired

    live = model_live.models_compare_live(a=a, b=b)

    assert (live["shared"], live["agree"], live["labelled"]) == (7, 1, 6)
    assert live["accuracy_a"]["right"] == 6 and live["accuracy_b"]["right"] == 0
    assert (live["only_a_right"], live["only_b_right"]) == (6, 0)
    assert live["p_value"] == pytest.approx(2 / 2**6)
    assert a.label in live["verdict"] and "right more often" in live["verdict"]
    # Five of five discordant pairs is not enough (p = 0.0625): the page says no difference was shown.
    TriageCase.objects.filter(final_pain=True, prediction__p_pain=0.7).update(final_pain=None, status="open")
    assert model_live.models_compare_live(a=a, b=b)["verdict"].startswith("No difference shown on 5")


def test_the_page_compares_two_models_and_says_when_no_difference_is_shown(browser_for, ml_engineer, neonate):
    a = ModelVersionFactory(unit=None, status="retired", metrics={"accuracy": 0.8, "n": 100, "n_pain": 40})
    b = ModelVersionFactory(unit=None, metrics={"accuracy": 0.82, "n": 90, "n_pain": 30})
    frame = FrameFactory(neonate=neonate)
    TriageCaseFactory(prediction=_scored(frame, a, 0.9), status=TriageCase.Status.DECIDED, final_pain=True)
    _scored(frame, b, 0.1)

    page = html(browser_for(ml_engineer).get(f"/annotations/models/?a={a.pk}&b={b.pk}"))

    assert "Frames both scored: <strong>1</strong>" in page
    assert "No difference shown on 1 nurse-labelled frame" in page
    assert "80.0%" in page and "82.0%" in page


def test_live_figures_per_model_are_one_query(django_assert_num_queries, neonate):
    a = ModelVersionFactory(unit=None)
    for final in (True, True, False):
        TriageCaseFactory(
            prediction=_scored(FrameFactory(neonate=neonate), a, 0.9), status="decided", final_pain=final, is_audit=True
        )
    with django_assert_num_queries(1):
        live = model_live.live_by_model([a.pk])
    assert live[a.pk]["audit"]["n"] == 3 and live[a.pk]["audit"]["right"] == 2 and live[a.pk]["uncertain"] is None
    assert ModelVersion.objects.count() == 1
