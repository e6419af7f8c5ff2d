"""Claims, NIPS assessments, double scoring, face boxes and acknowledgements: the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from annotations import services
from annotations.models import FaceBoxCorrection
from tests.factories import AlertFactory, UserFactory
from triage.models import Alert, AuditEvent, Role, TriageCase
from triage.services import unit_settings_get

pytestmark = pytest.mark.django_db

SCORES_PAIN = {"face": 1, "cry": 2, "breathing": 1, "arms": 0, "legs": 0, "arousal": 1}  # total 5
SCORES_CALM = {"face": 0, "cry": 0, "breathing": 0, "arms": 1, "legs": 0, "arousal": 0}  # total 1


def test_claim_sets_holder_and_expiry_from_unit_settings(case, nurse):
    rules = unit_settings_get(unit=case.unit)
    rules.claim_timeout_minutes = 7
    rules.save()
    before = timezone.now()
    case = services.case_claim(case=case, nurse=nurse)
    assert case.status == TriageCase.Status.CLAIMED
    assert case.claimed_by == nurse
    assert before + timedelta(minutes=7) <= case.claim_expires_at <= timezone.now() + timedelta(minutes=7)
    event = AuditEvent.objects.get(action="case.claimed")
    assert event.actor == nurse and event.object_id == str(case.pk)
    assert event.after["claimed_by"] == "alice"


def test_it_refuses_a_second_nurse_while_the_claim_is_live(case, nurse, second_nurse):
    services.case_claim(case=case, nurse=nurse)
    with pytest.raises(services.CaseConflict) as exc:
        services.case_claim(case=case, nurse=second_nurse)
    assert exc.value.code == "held"
    case.refresh_from_db()
    assert case.claimed_by == nurse


def test_reclaim_by_the_holder_extends_the_claim(case, nurse):
    first = services.case_claim(case=case, nurse=nurse)
    TriageCase.objects.filter(pk=case.pk).update(claim_expires_at=timezone.now() + timedelta(minutes=1))
    second = services.case_claim(case=case, nurse=nurse)
    assert second.claim_expires_at > timezone.now() + timedelta(minutes=10)
    assert second.claimed_at == first.claimed_at


def test_an_expired_claim_can_be_taken_over(case, nurse, second_nurse):
    services.case_claim(case=case, nurse=nurse)
    TriageCase.objects.filter(pk=case.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    taken = services.case_claim(case=case, nurse=second_nurse)
    assert taken.claimed_by == second_nurse
    event = AuditEvent.objects.filter(action="case.claimed").order_by("-id").first()
    assert event.before["claimed_by"] == "alice" and event.after["claimed_by"] == "bella"


def test_release_by_holder_returns_the_case_to_the_queue(case, nurse, second_nurse):
    services.case_claim(case=case, nurse=nurse)
    with pytest.raises(services.CaseConflict):
        services.case_release(case=case, nurse=second_nurse)
    case = services.case_release(case=case, nurse=nurse)
    assert case.status == TriageCase.Status.OPEN and case.claimed_by is None
    assert AuditEvent.objects.filter(action="case.released").count() == 1


def test_only_nurses_of_the_unit_claim(case, unit_admin, other_nurse, ml_engineer):
    for user in (unit_admin, other_nurse, ml_engineer):
        with pytest.raises(PermissionDenied):
            services.case_claim(case=case, nurse=user)


def test_assessment_totals_stores_the_rule_and_decides_the_case(case, nurse):
    services.case_claim(case=case, nurse=nurse)
    assessment = services.assessment_create(case=case, nurse=nurse, items=SCORES_CALM, note="settled after feed")
    assert assessment.total == 1 and assessment.pain is False and assessment.rule == "total>=3"
    case.refresh_from_db()
    assert case.status == TriageCase.Status.DECIDED and case.final_pain is False and case.claimed_by is None
    assert not Alert.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"assessment.created", "case.decided"} <= actions


def test_the_rule_in_force_is_the_units(case, nurse):
    rules = unit_settings_get(unit=case.unit)
    rules.nips_pain_threshold = 5
    rules.save()
    assessment = services.assessment_create(
        case=case, nurse=nurse, items={**SCORES_CALM, "cry": 2, "face": 1}
    )  # total 4
    assert assessment.total == 4 and assessment.pain is False and assessment.rule == "total>=5"


def test_nurse_confirmed_pain_raises_an_alert(case, nurse):
    assessment = services.assessment_create(case=case, nurse=nurse, items=SCORES_PAIN)  # unclaimed: implicit claim
    assert assessment.total == 5 and assessment.pain is True
    alert = Alert.objects.get()
    assert alert.source == Alert.Source.NURSE and alert.assessment == assessment and alert.neonate == case.neonate


def test_a_decided_case_cannot_be_assessed_again(case, nurse, second_nurse):
    services.assessment_create(case=case, nurse=nurse, items=SCORES_CALM)
    with pytest.raises(services.CaseConflict) as exc:
        services.assessment_create(case=case, nurse=second_nurse, items=SCORES_CALM)
    assert exc.value.code == "decided"
    with pytest.raises(services.CaseConflict):
        services.case_claim(case=case, nurse=second_nurse)


def test_it_refuses_an_assessment_while_another_nurse_holds_the_case(case, nurse, second_nurse):
    services.case_claim(case=case, nurse=nurse)
    with pytest.raises(services.CaseConflict) as exc:
        services.assessment_create(case=case, nurse=second_nurse, items=SCORES_CALM)
    assert exc.value.code == "held"


@pytest.mark.parametrize(
    "items, field",
    [
        ({**SCORES_CALM, "face": 2}, "face"),
        ({**SCORES_CALM, "cry": 3}, "cry"),
        ({**SCORES_CALM, "legs": -1}, "legs"),
        ({**SCORES_CALM, "arms": "one"}, "arms"),
        ({k: v for k, v in SCORES_CALM.items() if k != "arousal"}, "arousal"),
        ({**SCORES_CALM, "tongue": 1}, "tongue"),
    ],
)
def test_it_validates_each_item_range(case, nurse, items, field):
    with pytest.raises(ValidationError) as exc:
        services.assessment_create(case=case, nurse=nurse, items=items)
    assert field in exc.value.message_dict
    case.refresh_from_db()
    assert case.status == TriageCase.Status.OPEN


def test_unable_to_assess_needs_a_reason_and_records_no_total(case, nurse):
    with pytest.raises(ValidationError) as exc:
        services.assessment_create(case=case, nurse=nurse, items={}, unable_to_assess=True)
    assert "unable_reason" in exc.value.message_dict
    assessment = services.assessment_create(case=case, nurse=nurse, items={}, unable_reason="Face under CPAP mask")
    assert assessment.unable_to_assess and assessment.total is None and assessment.pain is None
    case.refresh_from_db()
    assert case.status == TriageCase.Status.DECIDED and case.final_pain is None


def test_intubated_silent_cry_is_scored(case, nurse):
    assessment = services.assessment_create(case=case, nurse=nurse, items=SCORES_PAIN, intubated=True)
    assert assessment.intubated and assessment.cry == 2 and assessment.total == 5


def test_double_scoring_needs_two_different_nurses_and_is_conservative(neonate, model, nurse, second_nurse):
    from tests.ui.conftest import make_case

    case = make_case(neonate=neonate, model=model, assessments_required=2)
    first = services.assessment_create(case=case, nurse=nurse, items=SCORES_CALM)
    case.refresh_from_db()
    assert case.status == TriageCase.Status.OPEN and case.final_pain is None and not first.is_second_opinion
    with pytest.raises(services.CaseConflict) as exc:
        services.case_claim(case=case, nurse=nurse)
    assert exc.value.code == "already_scored"
    second = services.assessment_create(case=case, nurse=second_nurse, items=SCORES_PAIN)
    case.refresh_from_db()
    assert second.is_second_opinion
    assert case.status == TriageCase.Status.DECIDED and case.final_pain is True  # either says pain -> pain


def test_face_box_correction_is_validated_and_audited(case, nurse):
    frame = case.prediction.frame
    with pytest.raises(ValidationError) as exc:
        services.face_box_correction_create(frame=frame, nurse=nurse, x=60, y=0, w=10, h=10)
    assert "w" in exc.value.message_dict
    correction = services.face_box_correction_create(frame=frame, nurse=nurse, x=2, y=3, w=20, h=30)
    assert (correction.x, correction.y, correction.w, correction.h, correction.no_face) == (2, 3, 20, 30, False)
    none = services.face_box_correction_create(frame=frame, nurse=nurse, no_face=True)
    assert none.no_face and FaceBoxCorrection.objects.count() == 2
    assert AuditEvent.objects.filter(action="facebox.corrected").count() == 2


def test_acknowledge_alert_records_who_and_note_once(nurse, neonate, other_nurse):
    alert = AlertFactory(neonate=neonate, suppressed_count=2)
    with pytest.raises(PermissionDenied):
        services.alert_acknowledge(alert=alert, actor=other_nurse)
    alert = services.alert_acknowledge(alert=alert, actor=nurse, note="sucrose given")
    assert alert.acknowledged_by == nurse and alert.ack_note == "sucrose given"
    with pytest.raises(services.AlertConflict):
        services.alert_acknowledge(alert=alert, actor=nurse)
    event = AuditEvent.objects.get(action="alert.acknowledged")
    assert event.after["note"] == "sucrose given" and event.after["suppressed_count"] == 2


def test_device_accounts_cannot_score(case, device):
    with pytest.raises(PermissionDenied):
        services.assessment_create(case=case, nurse=device.user, items=SCORES_CALM)


def test_inactive_nurse_cannot_claim(case, unit):
    former = UserFactory(username="gone", role=Role.NURSE, unit=unit, is_active=False)
    with pytest.raises(PermissionDenied):
        services.case_claim(case=case, nurse=former)


@pytest.mark.django_db(transaction=True)
def test_two_nurses_claiming_at_once_get_one_winner(case, nurse, second_nurse):
    """A real race: two threads, two database connections, row lock decides."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def claim(user):
        try:
            barrier.wait(timeout=5)
            services.case_claim(case=TriageCase.objects.get(pk=case.pk), nurse=user)
            outcomes[user.username] = "won"
        except services.CaseConflict:
            outcomes[user.username] = "409"
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(u,)) for u in (nurse, second_nurse)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes.values()) == ["409", "won"]
    winner = next(name for name, result in outcomes.items() if result == "won")
    assert TriageCase.objects.get(pk=case.pk).claimed_by.username == winner
    assert AuditEvent.objects.filter(action="case.claimed").count() == 1
