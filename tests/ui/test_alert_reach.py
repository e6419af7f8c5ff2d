"""Alerts reach people: the badge on every page, the summary the pages poll, escalation to the charge
nurse, alert cards that say who scored what on which frame, most severe first (issue 13, item 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotations import selectors as ward_selectors
from annotations import services as ward_services
from tests.factories import AlertFactory, NipsAssessmentFactory, UserFactory
from tests.ui.conftest import make_case
from triage import selectors, services
from triage.models import Alert, AuditEvent, Role, UnitSettings

pytestmark = pytest.mark.django_db


def nurse_alert(*, neonate, model, total: int, minutes_ago: float = 1, nurse=None):
    case = make_case(neonate=neonate, model=model, crop=False)
    kwargs = {"nurse": nurse} if nurse is not None else {}
    items, left = {}, total
    for name, maximum in (("cry", 2), ("face", 1), ("breathing", 1), ("arms", 1), ("legs", 1), ("arousal", 1)):
        items[name] = min(maximum, left)
        left -= items[name]
    assessment = NipsAssessmentFactory(case=case, total=total, **items, **kwargs)
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return AlertFactory(
        neonate=neonate, source=Alert.Source.NURSE, assessment=assessment, prediction=case.prediction, created_at=at
    )


def auto_alert(*, neonate, model, minutes_ago: float = 1):
    case = make_case(neonate=neonate, model=model, crop=False)
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return AlertFactory(neonate=neonate, source=Alert.Source.AUTO, prediction=case.prediction, created_at=at)


# --- escalation ---------------------------------------------------------------------------------


def test_an_alert_nobody_acknowledged_in_the_units_time_goes_to_the_charge_nurse(neonate, model, unit, nurse):
    UnitSettings.objects.update_or_create(unit=unit, defaults={"alert_escalation_minutes": 5})
    charge = UserFactory(username="cora", role=Role.NURSE, unit=unit, is_charge_nurse=True)
    overdue = auto_alert(neonate=neonate, model=model, minutes_ago=6)
    recent = auto_alert(neonate=neonate, model=model, minutes_ago=4)
    seen = auto_alert(neonate=neonate, model=model, minutes_ago=30)
    ward_services.alert_acknowledge(alert=seen, actor=nurse, note="sucrose")

    assert services.alerts_escalate() == 1

    overdue.refresh_from_db(), recent.refresh_from_db(), seen.refresh_from_db()
    assert overdue.escalated_at is not None and recent.escalated_at is None and seen.escalated_at is None
    row = AuditEvent.objects.get(action="alert.escalated")
    assert row.object_id == str(overdue.pk) and row.after["to"] == [charge.username]
    assert row.after["escalation_minutes"] == 5 and row.after["unacknowledged_minutes"] >= 6
    # Once only: a second run (or an overlapping one) escalates nothing more.
    assert services.alerts_escalate() == 0
    assert AuditEvent.objects.filter(action="alert.escalated").count() == 1
    # Four minutes later the recent one is due too.
    assert services.alerts_escalate(now=timezone.now() + timedelta(minutes=2)) == 1


def test_without_a_charge_nurse_escalations_go_to_the_unit_admins(neonate, model, unit, unit_admin, nurse):
    auto_alert(neonate=neonate, model=model, minutes_ago=10)

    services.alerts_escalate()

    assert AuditEvent.objects.get(action="alert.escalated").after["to"] == [unit_admin.username]
    assert selectors.alert_escalation_receiver(user=unit_admin)
    assert not selectors.alert_escalation_receiver(user=nurse)
    nurse.is_charge_nurse = True
    nurse.save()
    assert selectors.alert_escalation_receiver(user=nurse)
    assert not selectors.alert_escalation_receiver(user=unit_admin)  # a charge nurse is named now


def test_the_escalation_task_is_thin_and_scheduled_every_minute(neonate, model):
    from django.conf import settings

    from triage.tasks import alerts_escalate

    auto_alert(neonate=neonate, model=model, minutes_ago=60)
    assert alerts_escalate.apply().get() == 1
    entry = settings.CELERY_BEAT_SCHEDULE["escalate-unacknowledged-alerts"]
    assert entry["task"] == "triage.tasks.alerts_escalate" and entry["schedule"] == timedelta(minutes=1)


def test_the_escalation_time_is_a_unit_setting_audited_like_the_others(unit, unit_admin):
    services.unit_settings_update(unit=unit, actor=unit_admin, changes={"alert_escalation_minutes": 3})
    assert UnitSettings.objects.get(unit=unit).alert_escalation_minutes == 3
    row = AuditEvent.objects.get(action="unit_settings.updated")
    assert row.before == {"alert_escalation_minutes": 5} and row.after == {"alert_escalation_minutes": 3}
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.unit_settings_update(unit=unit, actor=unit_admin, changes={"alert_escalation_minutes": 0})


# --- the summary and the badge ------------------------------------------------------------------


def test_the_summary_counts_open_and_escalated_alerts_of_the_own_unit_without_the_mrn(
    client_for, neonate, other_neonate, model, nurse, unit
):
    first = nurse_alert(neonate=neonate, model=model, total=6, minutes_ago=20)
    newest = auto_alert(neonate=neonate, model=model, minutes_ago=1)
    auto_alert(neonate=other_neonate, model=model, minutes_ago=1)  # another unit
    services.alerts_escalate()

    body = client_for(nurse).get("/api/v1/alerts/summary/?poll=1").json()

    assert (body["open"], body["escalated"]) == (2, 1)
    assert body["newest"]["id"] == newest.pk and body["newest"]["bed"] == "4"
    assert "MRN" not in str(body) and neonate.mrn not in str(body)
    assert body["escalated_to_me"] is False and body["newest_escalated"] is None  # a plain nurse
    nurse.is_charge_nurse = True
    nurse.save()
    body = client_for(nurse).get("/api/v1/alerts/summary/").json()
    assert body["escalated_to_me"] is True and body["newest_escalated"]["id"] == first.pk
    assert body["newest_escalated"]["nips_total"] == 6


def test_every_page_shows_the_open_alert_badge_and_the_charge_nurse_the_escalation_banner(
    browser_for, neonate, model, nurse, unit
):
    auto_alert(neonate=neonate, model=model, minutes_ago=20)
    auto_alert(neonate=neonate, model=model, minutes_ago=1)
    services.alerts_escalate()
    for path in ["/", "/alerts/", "/neonates/"]:
        page = browser_for(nurse).get(path).content.decode()
        assert 'id="alert-badge"' in page and "<span data-badge-count>2</span>" in page, path
        assert "1 escalated" in page and "Escalated to you" not in page
    nurse.is_charge_nurse = True
    nurse.save()
    page = browser_for(nurse).get("/neonates/").content.decode()
    assert "Escalated to you:" in page and "1 pain alert nobody acknowledged" in page


def test_the_badge_costs_no_query_on_live_partials(browser_for, nurse, neonate, model, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    auto_alert(neonate=neonate, model=model)
    client = browser_for(nurse)
    with CaptureQueriesContext(connection) as queries:
        client.get("/?poll=1&v=stale")
    assert not [q for q in queries.captured_queries if "triage_alert" in q["sql"]]


# --- the alert cards ---------------------------------------------------------------------------


def test_alert_cards_are_most_severe_first_and_say_who_scored_what_on_which_frame(
    browser_for, neonate, model, nurse, second_nurse
):
    model_alert = auto_alert(neonate=neonate, model=model, minutes_ago=30)
    moderate = nurse_alert(neonate=neonate, model=model, total=3, minutes_ago=40, nurse=second_nurse)
    severe_recent = nurse_alert(neonate=neonate, model=model, total=6, minutes_ago=2, nurse=second_nurse)
    severe_worst = nurse_alert(neonate=neonate, model=model, total=7, minutes_ago=1, nurse=second_nurse)
    done = nurse_alert(neonate=neonate, model=model, total=7, minutes_ago=50, nurse=second_nurse)
    ward_services.alert_acknowledge(alert=done, actor=nurse)

    order = [a.pk for a in ward_selectors.alerts_for_unit(user=nurse)]
    assert order == [severe_worst.pk, severe_recent.pk, moderate.pk, model_alert.pk, done.pk]

    page = browser_for(nurse).get("/alerts/").content.decode()
    card = page[page.index(f'data-alert="{severe_worst.pk}"') :]
    card = card[: card.index("</li>")]
    assert "Severe pain" in card and "Bella" in card
    assert "<strong>7</strong> of 7" in card and "face 1, cry 2, breathing 1, arms 1, legs 1, arousal 1" in card
    assert f'href="/cases/{severe_worst.assessment.case_id}/"' in card and "Open the case" in card
    captured = severe_worst.prediction.frame.captured_at
    assert f"captured {timezone.localtime(captured):%H:%M}" in card
    model_card = page[page.index(f'data-alert="{model_alert.pk}"') :]
    assert "Model: pain" in model_card[: model_card.index("</li>")]


def test_a_just_raised_alert_reads_just_now_never_just_now_ago(browser_for, neonate, model, nurse):
    auto_alert(neonate=neonate, model=model, minutes_ago=0)
    page = browser_for(nurse).get("/alerts/").content.decode()
    assert "just now ago" not in page and "just now</time>" in page


def test_the_unit_admin_names_the_charge_nurse_on_the_staff_page_audited(browser_for, unit_admin, nurse, other_nurse):
    client = browser_for(unit_admin)

    response = client.post(f"/unit/people/{nurse.pk}/", {"action": "charge_on"})

    assert response.status_code == 302
    nurse.refresh_from_db()
    assert nurse.is_charge_nurse
    row = AuditEvent.objects.get(action="user.charge_nurse_set")
    assert row.actor == unit_admin and row.after == {"charge_nurse": True}
    page = client.get("/unit/people/").content.decode()
    assert "charge nurse</span>" in page and "Not charge nurse" in page
    client.post(f"/unit/people/{nurse.pk}/", {"action": "charge_off"})
    nurse.refresh_from_db()
    assert not nurse.is_charge_nurse
    # Another unit's nurse is not hers to name.
    assert client.post(f"/unit/people/{other_nurse.pk}/", {"action": "charge_on"}).status_code == 404
    other_nurse.refresh_from_db()
    assert not other_nurse.is_charge_nurse
