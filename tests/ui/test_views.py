"""The HTML pages: role checks, unit scoping, live polling, private images, settings audit, admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from annotations import selectors, services
from annotations.selectors import threshold_workload_estimate
from tests.factories import (
    AlertFactory,
    FrameFactory,
    ModelVersionFactory,
    NipsAssessmentFactory,
    PredictionFactory,
)
from tests.ui.conftest import face_png, make_case
from triage.models import AuditEvent, TriageCase, UnitSettings

pytestmark = pytest.mark.django_db

SCORES = {"face": "1", "cry": "2", "breathing": "1", "arms": "0", "legs": "0", "arousal": "1"}
OBSERVED = {"method": "cot"}  # the form asks how the baby was observed


def html(response) -> str:
    return response.content.decode()


# --- access ------------------------------------------------------------------------------

PAGES = ["/", "/alerts/", "/neonates/", "/annotations/export/", "/unit/settings/", "/audit/"]


@pytest.mark.parametrize("path", PAGES + ["/cases/{case}/", "/neonates/{neonate}/timeline/"])
def test_anonymous_is_sent_to_sign_in(browser_for, case, neonate, path):
    response = browser_for(None).get(path.format(case=case.pk, neonate=neonate.pk))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize(
    "path, person, expected",
    [
        ("/", "nurse", 200),
        ("/", "unit_admin", 200),
        ("/", "ml_engineer", 200),
        ("/alerts/", "nurse", 200),
        ("/alerts/", "unit_admin", 200),
        ("/alerts/", "ml_engineer", 403),
        ("/neonates/", "nurse", 200),
        ("/neonates/", "ml_engineer", 403),
        ("/annotations/export/", "nurse", 200),
        ("/annotations/export/", "ml_engineer", 403),
        ("/unit/settings/", "nurse", 403),
        ("/unit/settings/", "unit_admin", 200),
        ("/unit/settings/", "ml_engineer", 403),
        ("/audit/", "nurse", 403),
        ("/audit/", "unit_admin", 200),
        ("/audit/", "ml_engineer", 403),
        ("/cases/{case}/", "nurse", 200),
        ("/cases/{case}/", "unit_admin", 200),
        ("/cases/{case}/", "other_nurse", 404),
        ("/cases/{case}/", "ml_engineer", 403),
        ("/neonates/{neonate}/timeline/", "nurse", 200),
        ("/neonates/{neonate}/timeline/", "other_nurse", 404),
        ("/frames/{frame}/image", "nurse", 200),
        ("/frames/{frame}/image", "other_nurse", 404),
        ("/frames/{frame}/image", "device", 403),
        ("/predictions/{prediction}/crop", "nurse", 200),
        ("/predictions/{prediction}/crop", "unit_admin", 200),
        ("/predictions/{prediction}/crop", "other_nurse", 404),
        ("/predictions/{prediction}/crop", "ml_engineer", 403),  # never patient images (issue 16)
        ("/predictions/{prediction}/saliency", "nurse", 404),  # none stored
    ],
)
def test_role_and_unit_checks_on_every_page(request, browser_for, case, neonate, path, person, expected):
    user = request.getfixturevalue(person)
    user = getattr(user, "user", user)
    prediction = case.prediction
    response = browser_for(user).get(
        path.format(case=case.pk, neonate=neonate.pk, frame=prediction.frame_id, prediction=prediction.pk)
    )
    assert response.status_code == expected


def test_a_nurse_cannot_post_the_settings_form(browser_for, nurse):
    response = browser_for(nurse).post("/unit/settings/", {"threshold": "0.9"})
    assert response.status_code == 403
    assert UnitSettings.objects.get(unit=nurse.unit).threshold == 0.55


def test_unit_admin_cannot_claim_or_score_through_the_forms(browser_for, unit_admin, case):
    client = browser_for(unit_admin)
    assert client.post(f"/cases/{case.pk}/claim/").status_code == 403
    assert client.post(f"/annotations/cases/{case.pk}/assessment/", SCORES).status_code == 403


# --- queue -------------------------------------------------------------------------------


def test_dashboard_shows_own_unit_cases_with_the_basis(browser_for, nurse, case, other_case, model):
    auto = PredictionFactory(frame=FrameFactory(neonate=case.neonate), p_pain=0.95, model_version=model)
    response = browser_for(nurse).get("/")
    page = html(response)
    assert f"/cases/{case.pk}/" in page and f"/cases/{other_case.pk}/" not in page
    assert f"/predictions/{auto.pk}/crop" not in page
    assert "MRN-N-001" in page and "MRN-S-001" not in page
    assert "painnet v2.1" in page and "0.52" in page and "0.55" in page
    assert f"/predictions/{case.prediction.pk}/crop" in page
    assert "Nobody" in page


def test_dashboard_poll_answers_204_when_nothing_changed(browser_for, nurse, case, neonate, model):
    client = browser_for(nurse)
    first = client.get("/?poll=1")
    assert first.status_code == 200 and "<html" not in html(first)
    import re

    fingerprint = re.search(r"v=([0-9a-f]+)", html(first)).group(1)
    assert client.get(f"/?poll=1&v={fingerprint}").status_code == 204
    make_case(neonate=neonate, model=model)
    changed = client.get(f"/?poll=1&v={fingerprint}")
    assert changed.status_code == 200 and html(changed).count("data-case-row") == 2


def queue_ids(page: str) -> list[int]:
    import re

    return [int(pk) for pk in re.findall(r'class="case-link" href="/cases/(\d+)/"', page)]


def test_a_long_queue_shows_the_total_and_pages_through_every_case_pain_first(
    browser_for, nurse, second_nurse, neonate, model, settings
):
    from annotations.views import QUEUE_LIMIT

    cases = [
        make_case(neonate=neonate, model=model, p_pain=0.5 + (i % 7) / 100, crop=False) for i in range(QUEUE_LIMIT + 7)
    ]
    # Blind double scoring: a case she already scored is not hers to wait for, and not counted.
    scored = cases[3]
    TriageCase.objects.filter(pk=scored.pk).update(assessments_required=2)
    NipsAssessmentFactory(case=scored, nurse=nurse)
    waiting = [c for c in cases if c.pk != scored.pk]
    expected = [c.pk for c in sorted(waiting, key=lambda c: (-c.p_pain, c.created_at, c.pk))]
    client = browser_for(nurse)

    first = html(client.get("/"))
    assert f"<strong>{len(waiting)}</strong> cases waiting" in first
    assert f"Showing the {QUEUE_LIMIT} most pain-like" in first and "6 more waiting" in first
    assert queue_ids(first) == expected[:QUEUE_LIMIT]
    assert 'href="/?page=2" rel="next"' in first and "Next 6 of 6 waiting" in first

    second = html(client.get("/?page=2"))
    assert queue_ids(second) == expected[QUEUE_LIMIT:]
    assert f"Showing cases {QUEUE_LIMIT + 1}–{len(waiting)}" in second and 'rel="prev"' in second
    assert 'rel="next"' not in second and "more waiting" not in second
    assert "page=2&amp;v=" in second  # its poll keeps the page
    # A page past the end (the queue shrank) shows the last page; nonsense shows the first.
    assert queue_ids(html(client.get("/?page=99"))) == expected[QUEUE_LIMIT:]
    assert queue_ids(html(client.get("/?page=x"))) == expected[:QUEUE_LIMIT]

    # The second scorer still waits for the case the first one scored.
    other_view = html(browser_for(second_nurse).get("/"))
    assert f"<strong>{len(cases)}</strong> cases waiting" in other_view


def test_the_poll_sees_a_case_arriving_beyond_the_first_page(browser_for, nurse, neonate, model):
    import re

    from annotations.views import QUEUE_LIMIT

    for _ in range(QUEUE_LIMIT):
        make_case(neonate=neonate, model=model, p_pain=0.5, crop=False)
    client = browser_for(nurse)
    fingerprint = re.search(r"v=([0-9a-f]+)", html(client.get("/"))).group(1)
    assert client.get(f"/?poll=1&v={fingerprint}").status_code == 204
    make_case(neonate=neonate, model=model, p_pain=0.45, crop=False)  # least uncertain: page 2
    changed = client.get(f"/?poll=1&v={fingerprint}")
    assert changed.status_code == 200 and "1 more waiting" in html(changed)
    assert html(changed).count("data-case-row") == QUEUE_LIMIT


def test_a_short_queue_has_no_pager(browser_for, nurse, case):
    page = html(browser_for(nurse).get("/"))
    assert "<strong>1</strong> case waiting." in page and "queue-pager" not in page and "more waiting" not in page


def test_polling_does_not_count_as_activity(browser_for, nurse, settings):
    client = browser_for(nurse)
    client.get("/")
    session = client.session
    session["neopain_last_seen"] = 1.0  # long ago
    session.save()
    response = client.get("/?poll=1")
    assert response.status_code == 302 and "/login/?expired=1" in response["Location"]


def test_bootstrap_banner_on_every_page(browser_for, nurse, db):
    ModelVersionFactory(name="bootstrap-adult-faces", version="0", is_bootstrap=True, unit=None)
    for path in ("/", "/alerts/", "/neonates/"):
        assert "Bootstrap model in use" in html(browser_for(nurse).get(path))


# --- case view and forms -----------------------------------------------------------------


def test_case_view_offers_claim_then_the_nips_form(browser_for, nurse, case):
    client = browser_for(nurse)
    page = html(client.get(f"/cases/{case.pk}/"))
    assert "Claim this case" in page and 'fieldset class="nips" disabled' in page
    assert client.post(f"/cases/{case.pk}/claim/").status_code == 302
    page = html(client.get(f"/cases/{case.pk}/"))
    assert "You hold this case" in page and 'fieldset class="nips" disabled' not in page
    for name in SCORES:
        assert f'name="{name}"' in page


def test_case_view_shows_who_holds_it(browser_for, nurse, second_nurse, case):
    services.case_claim(case=case, nurse=second_nurse)
    page = html(browser_for(nurse).get(f"/cases/{case.pk}/"))
    assert "Held by Bella" in page and "Claim this case" not in page


def test_claiming_a_held_case_through_the_form_shows_the_problem(browser_for, nurse, second_nurse, case):
    services.case_claim(case=case, nurse=second_nurse)
    response = browser_for(nurse).post(f"/cases/{case.pk}/claim/", follow=True)
    assert "Not claimed" in html(response) and "Bella" in html(response)
    case.refresh_from_db()
    assert case.claimed_by == second_nurse


def test_submitting_the_form_decides_the_case_and_raises_the_alert(browser_for, nurse, case):
    client = browser_for(nurse)
    client.post(f"/cases/{case.pk}/claim/")
    response = client.post(f"/annotations/cases/{case.pk}/assessment/", {**SCORES, **OBSERVED, "note": "cries"}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    page = html(response)
    assert "NIPS 5" in page and "PAIN" in page and "pain team has been alerted" in page
    assert f"/cases/{case.pk}/" not in page
    case.refresh_from_db()
    assert case.status == TriageCase.Status.DECIDED
    assert "Needs acknowledgement" in html(client.get("/alerts/"))


def test_form_errors_are_shown_item_by_item(browser_for, nurse, case):
    client = browser_for(nurse)
    client.post(f"/cases/{case.pk}/claim/")
    response = client.post(f"/annotations/cases/{case.pk}/assessment/", {**SCORES, **OBSERVED, "cry": "3", "legs": ""})
    assert response.status_code == 400
    page = html(response)
    assert "Must be from 0 to 2." in page and "Required." in page
    assert 'value="1" checked' in page  # what was entered is kept


def test_blind_second_scorer_sees_no_scores(browser_for, nurse, second_nurse, neonate, model):
    case = make_case(neonate=neonate, model=model, assessments_required=2)
    services.assessment_create(case=case, nurse=nurse, items={k: int(v) for k, v in SCORES.items()}, note="secret note")
    page = html(browser_for(second_nurse).get(f"/cases/{case.pk}/"))
    assert "secret note" not in page and "NIPS 5" not in page and "hidden until the case is decided" in page


def test_face_box_correction_form(browser_for, nurse, case):
    client = browser_for(nurse)
    bad = client.post(f"/annotations/cases/{case.pk}/face-box/", {"x": "0", "y": "0", "w": "500", "h": "10"})
    assert bad.status_code == 400 and "keep the box inside" in html(bad)
    ok = client.post(f"/annotations/cases/{case.pk}/face-box/", {"x": "1", "y": "1", "w": "30", "h": "30"})
    assert ok.status_code == 302
    assert AuditEvent.objects.filter(action="facebox.corrected", actor=nurse).exists()


def test_case_view_renders_saliency_when_present(browser_for, nurse, case):
    case.prediction.saliency.save("s.png", ContentFile(face_png()), save=True)
    page = html(browser_for(nurse).get(f"/cases/{case.pk}/"))
    assert f"/predictions/{case.prediction.pk}/saliency" in page


def test_j_and_k_neighbours_follow_queue_order(browser_for, nurse, neonate, model):
    first = make_case(neonate=neonate, model=model, p_pain=0.54)
    middle = make_case(neonate=neonate, model=model, p_pain=0.52)
    last = make_case(neonate=neonate, model=model, p_pain=0.50)
    page = html(browser_for(nurse).get(f"/cases/{middle.pk}/"))
    assert f'data-next-url="/cases/{last.pk}/"' in page and f'data-prev-url="/cases/{first.pk}/"' in page


# --- private images ----------------------------------------------------------------------


def test_images_are_private_inline_uncached_and_audited_once(browser_for, nurse, case):
    client = browser_for(nurse)
    response = client.get(f"/frames/{case.prediction.frame_id}/image")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'inline; filename="frame-{case.prediction.frame_id}.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    client.get(f"/frames/{case.prediction.frame_id}/image")
    crop = client.get(f"/predictions/{case.prediction.pk}/crop")
    assert crop.status_code == 200 and crop["Content-Disposition"].startswith("inline;")
    assert AuditEvent.objects.filter(action="frame.viewed", actor=nurse).count() == 1
    assert AuditEvent.objects.filter(action="crop.viewed", actor=nurse, object_id=str(case.prediction.pk)).count() == 1


def test_media_is_never_served_from_a_public_url(settings, client, nurse, case):
    assert settings.MEDIA_URL is None
    name = case.prediction.frame.image.name
    client.force_login(nurse)
    assert client.get(f"/media/{name}").status_code == 404


# --- alerts ------------------------------------------------------------------------------


def test_alerts_page_lists_open_alerts_with_repeats_and_acknowledges(browser_for, nurse, neonate, other_neonate):
    alert = AlertFactory(neonate=neonate, suppressed_count=3)
    foreign = AlertFactory(neonate=other_neonate)
    client = browser_for(nurse)
    page = html(client.get("/alerts/"))
    assert "3 repeats" in page and f'data-alert="{alert.pk}"' in page and f'data-alert="{foreign.pk}"' not in page
    response = client.post(f"/alerts/{alert.pk}/acknowledge/", {"note": "sucrose"}, follow=True)
    assert "acknowledged" in html(response)
    alert.refresh_from_db()
    assert alert.acknowledged_by == nurse and alert.ack_note == "sucrose"
    assert client.post(f"/alerts/{foreign.pk}/acknowledge/", {"note": "x"}).status_code == 404


# --- timeline ----------------------------------------------------------------------------


def test_timeline_draws_predictions_threshold_assessments_and_alerts(browser_for, nurse, case, neonate):
    NipsAssessmentFactory(case=case, nurse=nurse, total=5, pain=True)
    AlertFactory(neonate=neonate)
    page = html(browser_for(nurse).get(f"/neonates/{neonate.pk}/timeline/"))
    assert "<svg" in page and "tl-threshold" in page and "automatic pain at or above 0.55" in page
    assert page.count('class="tl-point tl-point--nurse"') >= 1
    assert 'class="tl-nips tl-nips--pain"' in page and 'class="tl-alert"' in page


# --- unit admin settings -----------------------------------------------------------------


def test_threshold_change_is_audited_with_actor_utc_time_old_and_new(browser_for, unit_admin):
    form = {
        "threshold": "0.7",
        "nips_pain_threshold": "3",
        "alert_cooldown_minutes": "10",
        "claim_timeout_minutes": "15",
        "double_scoring_share": "0",
        "missed_pain_target": "",
        "device_offline_minutes": "2",
        "alert_rule_k": "2",
        "alert_rule_n": "3",
        "alert_rule_window_seconds": "60",
    }
    before = timezone.now()
    response = browser_for(unit_admin).post("/unit/settings/", form, REMOTE_ADDR="10.0.0.7")
    assert response.status_code == 302
    assert UnitSettings.objects.get(unit=unit_admin.unit).threshold == 0.7
    event = AuditEvent.objects.get(action="unit_settings.updated")
    assert event.actor == unit_admin and event.unit == unit_admin.unit and event.ip == "10.0.0.7"
    assert event.before == {"threshold": 0.55} and event.after == {"threshold": 0.7}
    assert event.created_at >= before and event.created_at.utcoffset() == timedelta(0)
    page = html(browser_for(unit_admin).get("/unit/settings/"))
    assert "0.55" in page and "0.7" in page and "UTC" in page


def test_invalid_settings_are_refused_with_field_errors(browser_for, unit_admin):
    form = {
        "threshold": "0.3",
        "nips_pain_threshold": "9",
        "alert_cooldown_minutes": "10",
        "claim_timeout_minutes": "15",
        "double_scoring_share": "0",
    }
    response = browser_for(unit_admin).post("/unit/settings/", form)
    assert response.status_code == 400 and "greater than or equal to 0.5" in html(response)
    assert not AuditEvent.objects.filter(action="unit_settings.updated").exists()


def test_settings_page_renders_metrics_guarantee_or_not_yet_computed(browser_for, unit_admin, db):
    client = browser_for(unit_admin)
    ModelVersionFactory(unit=None, metrics={})
    assert html(client.get("/unit/settings/")).count("not yet computed") >= 5
    from triage.models import ModelVersion

    ModelVersion.objects.all().delete()
    ModelVersionFactory(
        unit=None,
        metrics={
            "accuracy_mean": 0.86,
            "auc": 0.91,
            "thresholds": [
                {"threshold": t, "accuracy": 0.8 + (t - 0.5) * 0.3, "manual": round((t - 0.5) * 1.5 * 200), "n": 200}
                for t in (0.5, 0.55, 0.6, 0.7, 0.8, 0.9)
            ],
            "guarantee": {"alpha": 0.05, "threshold": 0.72, "n_calibration": 412, "delta": 0.1},
        },
    )
    page = html(client.get("/unit/settings/"))
    assert "86.0%" in page and "curve-svg" in page and "nearest to current" in page
    assert "412" in page and "5.0%" in page and "Not covered" in page
    assert "60 (30%)" in page  # manual is a count of cases; its share is shown beside it


def test_workload_estimate_is_one_query_over_the_last_seven_days(django_assert_num_queries, unit, neonate, model):
    now = timezone.now()
    for p_pain, days_ago in ((0.52, 1), (0.62, 2), (0.97, 3), (0.10, 4), (0.99, 9)):
        PredictionFactory(
            frame=FrameFactory(neonate=neonate),
            p_pain=p_pain,
            model_version=model,
            created_at=now - timedelta(days=days_ago),
        )
    with django_assert_num_queries(1):
        estimate = threshold_workload_estimate(unit=unit, now=now)
    assert estimate["n"] == 4 and 4.0 <= estimate["days"] <= 4.01
    by_t = {r["threshold"]: r for r in estimate["rows"]}
    # confidences 0.52, 0.62, 0.97, 0.90; labelled pain: 0.52, 0.62 and 0.97 (p_pain >= 0.5)
    assert by_t[0.5]["nurse_per_day"] == 0 and by_t[0.5]["auto_pain_per_day"] == pytest.approx(3 / estimate["days"])
    assert by_t[0.55]["nurse_per_day"] == pytest.approx(1 / estimate["days"])
    assert by_t[0.55]["auto_pain_per_day"] == pytest.approx(2 / estimate["days"])
    assert by_t[0.95]["nurse_per_day"] == pytest.approx(3 / estimate["days"])
    assert by_t[0.95]["auto_pain_per_day"] == pytest.approx(1 / estimate["days"])
    assert [r["threshold"] for r in estimate["rows"]] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


# --- audit log ---------------------------------------------------------------------------


def test_audit_log_page_filters_and_is_scoped_to_the_unit(browser_for, unit_admin, nurse, other_nurse, case):
    services.case_claim(case=case, nurse=nurse)
    from triage.services import audit_record

    audit_record(action="case.claimed", actor=other_nurse, object_type="x", object_id="999")
    client = browser_for(unit_admin)
    page = html(client.get("/audit/?action=case.claimed"))
    assert "alice" in page and "olga" not in page
    page = html(client.get("/audit/?actor=nobody"))
    assert "No events match" in page


def test_superuser_sees_every_unit_in_the_audit_log(browser_for, superuser, nurse, other_nurse):
    from triage.services import audit_record

    audit_record(action="demo", actor=nurse)
    audit_record(action="demo", actor=other_nurse)
    page = html(browser_for(superuser).get("/audit/?action=demo"))
    assert "alice" in page and "olga" in page


# --- Django admin ------------------------------------------------------------------------


def test_audit_events_are_read_only_in_the_django_admin(browser_for, superuser, nurse):
    from triage.services import audit_record

    event = audit_record(action="demo", actor=nurse)
    client = browser_for(superuser)
    assert client.get("/django-admin/triage/auditevent/").status_code == 200
    assert client.get("/django-admin/triage/auditevent/add/").status_code == 403
    assert client.post(f"/django-admin/triage/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    change = client.post(f"/django-admin/triage/auditevent/{event.pk}/change/", {"action": "tampered"})
    assert change.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "demo"


@pytest.mark.parametrize(
    "model_path",
    [
        "triage/unit",
        "triage/neonate",
        "triage/device",
        "triage/user",
        "triage/modelversion",
        "annotations/nipsassessment",
        "triage/user/add",
        "triage/unit/add",
    ],
)
def test_admin_lists_the_project_models(browser_for, superuser, model_path):
    assert browser_for(superuser).get(f"/django-admin/{model_path}/").status_code == 200


def test_login_page_renders_and_signs_in(client, nurse, password):
    page = html(client.get("/login/"))
    assert 'name="username"' in page and 'name="password"' in page
    response = client.post("/login/", {"username": "alice", "password": password})
    assert response.status_code == 302 and response["Location"] == "/"
    from django.test import Client

    bad = Client().post("/login/", {"username": "alice", "password": "wrong"})
    assert "did not match" in html(bad)


def test_settings_page_recomputes_the_guarantee_for_the_units_alpha(browser_for, unit_admin, db):
    """Calibration scores are stored with the model: a new alpha changes the guaranteed threshold at once."""
    import numpy as np

    from inference import thresholds as th
    from triage.models import ModelVersion

    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(0, 2.0, 600))))
    metrics = th.threshold_analysis(p_pain=p, labels=y, alpha=0.05)
    ModelVersion.objects.all().delete()
    ModelVersionFactory(unit=None, metrics=metrics)
    client = browser_for(unit_admin)
    stored = metrics["guarantee"]["threshold"]
    assert f"{stored:.2f}" in html(client.get("/unit/settings/"))
    UnitSettings.objects.filter(unit=unit_admin.unit).update(missed_pain_target=0.08)
    page = html(client.get("/unit/settings/"))
    fresh = th.guaranteed_threshold(p_pain=p, labels=y, alpha=0.08)["threshold"]
    assert fresh < stored and f"{fresh:.2f}" in page and "recomputed now" in page
    assert "missed pain among all frames" in page and "Majority-class baseline" in page


def test_settings_page_shows_live_accuracy_on_audit_cases_apart_from_uncertain_cases(browser_for, unit_admin, neonate):
    model = ModelVersionFactory(unit=None, metrics={})
    decided = TriageCase.Status.DECIDED
    # Audit: 3 of 4 right (p 0.9 -> pain). Uncertain: 1 of 2 right.
    for p_pain, final in ((0.9, True), (0.9, True), (0.1, False), (0.9, False)):
        make_case(neonate=neonate, model=model, p_pain=p_pain, is_audit=True, status=decided, final_pain=final)
    for p_pain, final in ((0.52, True), (0.52, False)):
        make_case(neonate=neonate, model=model, p_pain=p_pain, status=decided, final_pain=final)
    make_case(neonate=neonate, model=model, p_pain=0.9, is_audit=True)  # open: not counted
    live = selectors.live_accuracy(unit=unit_admin.unit, model_version=model)
    assert live == {"audit": {"n": 4, "accuracy": 0.75}, "uncertain": {"n": 2, "accuracy": 0.5}}
    page = html(browser_for(unit_admin).get("/unit/settings/"))
    assert "75.0% (n = 4; 95% interval 30%–95%)" in page and "50.0% (n = 2; 95% interval 9%–91%)" in page
