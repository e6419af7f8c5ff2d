"""Writes for nurse decisions: claims, NIPS assessments, face-box corrections, alert acknowledgements.

Each service owns its transaction and locks the row it decides on (``select_for_update``), so two
nurses pressing "claim" or "submit" at the same moment get one winner and one clear 409.

Double scoring (``TriageCase.assessments_required == 2``): two different nurses score blind; the
case is decided when the last required assessment lands, and the final verdict is *pain if either
nurse says pain* (conservative: a missed pain episode costs more than a second look). A nurse's
pain verdict raises the alert at once, without waiting for the second scorer.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotations.assessment_input import (
    nips_items_clean,
    observed_at_clean,
)
from annotations.bedside_selectors import bedside_related_cases
from annotations.disagreements import disagreement_flag
from annotations.models import FaceBoxCorrection, NipsAssessment
from annotations.observations import Kind, Method, ObservationError, method_parse, observation_verdict
from triage.models import Alert, Frame, Role, TriageCase, User
from triage.services import alert_raise, audit_record, unit_settings_get

logger = logging.getLogger(__name__)

UNABLE_REASON_MAX = 500
NOTE_MAX = 2000


class CaseConflict(Exception):
    """The case cannot take this action now (held by another nurse, already decided ...). HTTP 409."""

    def __init__(self, message: str, *, code: str = "conflict"):
        super().__init__(message)
        self.message = message
        self.code = code


class AlertConflict(CaseConflict):
    """The alert was already acknowledged. HTTP 409."""


def _ensure_clinician_of_unit(*, user: User, unit_id: int, roles: tuple[str, ...]) -> None:
    if not user.is_active or not (user.is_superuser or (user.role in roles and user.unit_id == unit_id)):
        raise PermissionDenied("Your role or unit may not do this.")


def _lock_undecided_case(case: TriageCase, *, message: str = "This case is already decided.") -> TriageCase:
    """Lock ``case``'s row and return it fresh; CaseConflict (``message``) if it is already decided."""
    case = TriageCase.objects.select_for_update().select_related("unit", "neonate").get(pk=case.pk)
    if case.status == TriageCase.Status.DECIDED:
        raise CaseConflict(message, code="decided")
    return case


def _claim_snapshot(case: TriageCase) -> dict:
    return {
        "status": case.status,
        "claimed_by": case.claimed_by.get_username() if case.claimed_by_id else None,
        "claim_expires_at": case.claim_expires_at.isoformat() if case.claim_expires_at else None,
    }


def _claim_save(case: TriageCase, *, nurse: User, action: str, before: dict, request=None) -> None:
    """Save ``case``'s claim fields and audit the change (``before``: the claim snapshot before it)."""
    case.save(update_fields=["status", "claimed_by", "claimed_at", "claim_expires_at"])
    audit_record(
        action=action,
        actor=nurse,
        unit=case.unit,
        obj=case,
        before=before,
        after=_claim_snapshot(case),
        request=request,
    )


def _ensure_not_held_by_other(case: TriageCase, nurse: User, now) -> None:
    if case.claim_is_live(now) and case.claimed_by_id != nurse.pk:
        holder = case.claimed_by
        name = (holder.get_full_name() or holder.get_username()) if holder else "another nurse"
        raise CaseConflict(f"{name} holds this case until {case.claim_expires_at:%H:%M} UTC.", code="held")


@transaction.atomic
def case_claim(*, case: TriageCase, nurse: User, request=None) -> TriageCase:
    """Claim ``case`` for ``nurse`` until the unit's claim timeout; the holder re-claiming extends it.

    An expired claim of another nurse is taken over (the audit row names the previous holder).
    """
    _ensure_clinician_of_unit(user=nurse, unit_id=case.unit_id, roles=(Role.NURSE,))
    now = timezone.now()
    case = _lock_undecided_case(case)
    _ensure_not_held_by_other(case, nurse, now)
    if case.assessments.filter(nurse=nurse).exists():
        raise CaseConflict(
            "You have already scored this case; a second nurse must score it blind.", code="already_scored"
        )
    before = _claim_snapshot(case)
    timeout = timedelta(minutes=unit_settings_get(unit=case.unit).claim_timeout_minutes)
    case.status = TriageCase.Status.CLAIMED
    if case.claimed_by_id != nurse.pk or not case.claim_is_live(now):
        case.claimed_at = now
    case.claimed_by = nurse
    case.claim_expires_at = now + timeout
    _claim_save(case, nurse=nurse, action="case.claimed", before=before, request=request)
    return case


@transaction.atomic
def case_claim_extend(*, case: TriageCase, nurse: User, request=None) -> TriageCase:
    """Push the holder's claim out by the unit's claim timeout while she is editing (the page's heartbeat).

    A live claim is extended without an audit row (a heartbeat a minute would bury the log; the
    holder does not change). A claim of hers that lapsed with nobody taking it over is taken
    again, audited as ``case.claimed``. CaseConflict when another nurse holds it (``held``), the
    claim was released (``not_held``), the case is decided or she already scored it.
    """
    _ensure_clinician_of_unit(user=nurse, unit_id=case.unit_id, roles=(Role.NURSE,))
    now = timezone.now()
    case = _lock_undecided_case(case)
    _ensure_not_held_by_other(case, nurse, now)
    if case.claimed_by_id != nurse.pk:
        raise CaseConflict("You no longer hold this case: claim it again to go on.", code="not_held")
    if case.claim_is_live(now):
        case.claim_expires_at = now + timedelta(minutes=unit_settings_get(unit=case.unit).claim_timeout_minutes)
        case.save(update_fields=["claim_expires_at"])
        return case
    return case_claim(case=case, nurse=nurse, request=request)


@transaction.atomic
def case_release(*, case: TriageCase, nurse: User, if_expires_at=None, request=None) -> TriageCase:
    """Give a claimed case back to the queue. Only the holder releases a live claim.

    ``if_expires_at``: release only if the claim still ends then (the case page leaving sends the
    end it knew; a reload of the page has extended the claim since, and keeps it).
    """
    _ensure_clinician_of_unit(user=nurse, unit_id=case.unit_id, roles=(Role.NURSE, Role.UNIT_ADMIN))
    now = timezone.now()
    case = _lock_undecided_case(case)
    if not case.claimed_by_id:
        return case
    if if_expires_at is not None and case.claim_expires_at != if_expires_at:
        raise CaseConflict("The claim was renewed since; it stays.", code="renewed")
    if case.claimed_by_id != nurse.pk and case.claim_is_live(now) and not nurse.is_unit_admin:
        raise CaseConflict("Only the nurse holding this case can release it.", code="held")
    before = _claim_snapshot(case)
    case.status = TriageCase.Status.OPEN
    case.claimed_by = None
    case.claimed_at = None
    case.claim_expires_at = None
    _claim_save(case, nurse=nurse, action="case.released", before=before, request=request)
    return case


def _final_pain(assessments: list[NipsAssessment]) -> bool | None:
    """Pain if any scorer says pain; no pain if any could score and none said pain; None if none could."""
    verdicts = [a.pain for a in assessments if a.pain is not None]
    if not verdicts:
        return None
    return any(verdicts)


@transaction.atomic
def assessment_create(
    *,
    case: TriageCase,
    nurse: User,
    items: dict,
    note: str = "",
    unable_reason: str = "",
    intubated: bool = False,
    unable_to_assess: bool | None = None,
    method: str | None = None,
    observed_at=None,
    nurse_call: bool | None = None,
    resolve_related: bool | None = None,
    request=None,
) -> NipsAssessment:
    """Record ``nurse``'s NIPS scoring of ``case``; decide the case when the last required score lands.

    ``method`` says how the baby was observed (:class:`annotations.observations.Method`; blank:
    not recorded). The NIPS total and rule verdict exist only for a complete observation; a
    face-only or partial review needs ``nurse_call`` (her own pain / no pain call) and decides
    the case by it. An observation at the cot also resolves the baby's other open cases from the
    unit's bedside window unless ``resolve_related`` is False (:mod:`annotations.bedside`,
    :func:`annotations.bedside_selectors.bedside_related_cases`).

    The nurse must hold the claim, or the case must be unclaimed (then it is claimed implicitly).
    ``unable_to_assess`` defaults to "a reason was given". Nurse-confirmed pain raises an alert.
    Raises ValidationError (field errors), CaseConflict (held / decided / already scored) or
    PermissionDenied (not a nurse of the case's unit).
    """
    _ensure_clinician_of_unit(user=nurse, unit_id=case.unit_id, roles=(Role.NURSE,))
    unable_reason = (unable_reason or "").strip()
    note = (note or "").strip()
    if unable_to_assess is None:
        unable_to_assess = bool(unable_reason)
    errors: dict[str, list[str]] = {}
    try:
        observed_by = method_parse(method)
    except ObservationError as exc:
        raise ValidationError(exc.errors) from exc
    if unable_to_assess and not unable_reason:
        errors["unable_reason"] = ["Say why the baby could not be assessed."]
    if len(unable_reason) > UNABLE_REASON_MAX:
        errors["unable_reason"] = [f"At most {UNABLE_REASON_MAX} characters."]
    if len(note) > NOTE_MAX:
        errors["note"] = [f"At most {NOTE_MAX} characters."]
    cleaned: dict[str, int | None] = {}
    try:
        cleaned = nips_items_clean(items or {}, unable_to_assess=bool(unable_to_assess), method=observed_by)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    rules = unit_settings_get(unit=case.unit)
    verdict = None
    if not errors and not unable_to_assess:
        try:
            verdict = observation_verdict(
                observed_by, cleaned, threshold=rules.nips_pain_threshold, nurse_call=nurse_call
            )
        except ObservationError as exc:
            errors.update(exc.errors)
    now = timezone.now()
    try:
        observed_at = observed_at_clean(
            observed_at, method=observed_by, frame_captured_at=case.prediction.frame.captured_at, now=now
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)

    fields = {
        **cleaned,
        "intubated": bool(intubated),
        "rule": rules.nips_rule,
        "unable_to_assess": bool(unable_to_assess),
        "unable_reason": unable_reason,
        "note": note,
        "method": observed_by.value,
        "observed_at": observed_at,
        "kind": (verdict.kind if verdict else Kind.NIPS).value,
        "nurse_call": nurse_call,
        "total": verdict.total if verdict else None,
        "pain": verdict.pain if verdict else None,
    }
    assessment = assessment_record(case=case, nurse=nurse, fields=fields, now=now, request=request)
    if observed_by == Method.COT and resolve_related is not False:
        _bedside_resolve_related(source=assessment, nurse=nurse, fields=fields, now=now, request=request)
    return assessment


def _bedside_resolve_related(*, source: NipsAssessment, nurse: User, fields: dict, now, request=None) -> None:
    """Copy a bedside observation onto the baby's other open cases in the unit's window (same transaction).

    A case that became held or decided meanwhile is skipped (logged), never overwritten.
    """
    for related in bedside_related_cases(case=source.case, nurse=nurse, at=source.observed_at or now):
        try:
            with transaction.atomic():
                assessment_record(case=related, nurse=nurse, fields=fields, now=now, request=request, source=source)
        except CaseConflict as exc:
            logger.info("bedside observation %s skipped case %s: %s", source.pk, related.pk, exc.message)


def assessment_record(
    *, case: TriageCase, nurse: User, fields: dict, now, request=None, source: NipsAssessment | None = None
) -> NipsAssessment:
    """Save one validated assessment on ``case`` (locked), decide the case if it was the last score, audit, alert.

    ``source``: the bedside observation this one copies onto another case of the same baby
    (its pain alert, if any, was raised with the source).
    """
    case = _lock_undecided_case(case, message="This case is already decided; it cannot be assessed again.")
    _ensure_not_held_by_other(case, nurse, now)
    previous = list(case.assessments.all())
    if any(a.nurse_id == nurse.pk for a in previous):
        raise CaseConflict(
            "You have already scored this case; a second nurse must score it blind.", code="already_scored"
        )
    assessment = NipsAssessment(
        case=case,
        nurse=nurse,
        is_second_opinion=bool(previous),
        started_at=case.claimed_at if case.claimed_by_id == nurse.pk else None,
        created_at=now,
        bedside_source=source,
        **fields,
    )
    try:
        with transaction.atomic():
            assessment.save()
    except IntegrityError as exc:  # the (case, nurse) unique constraint: a double submit
        raise CaseConflict("You have already scored this case.", code="already_scored") from exc

    before = _claim_snapshot(case)
    all_assessments = [*previous, assessment]
    decided = len(all_assessments) >= case.assessments_required
    case.claimed_by = None
    case.claimed_at = None
    case.claim_expires_at = None
    case.bedside_started_at = None
    if decided:
        case.status = TriageCase.Status.DECIDED
        case.decided_at = now
        case.final_pain = _final_pain(all_assessments)
    else:
        case.status = TriageCase.Status.OPEN
    case.save(
        update_fields=[
            *("status", "claimed_by", "claimed_at", "claim_expires_at", "decided_at", "final_pain"),
            "bedside_started_at",
        ]
    )

    audit_record(
        action="assessment.created",
        actor=nurse,
        unit=case.unit,
        obj=assessment,
        after={
            "case": case.pk,
            **assessment.items(),
            "total": assessment.total,
            "rule": assessment.rule,
            "pain": assessment.pain,
            "kind": assessment.kind,
            "method": assessment.method,
            "observed_at": assessment.observed_at.isoformat() if assessment.observed_at else None,
            "nurse_call": assessment.nurse_call,
            "bedside_source": source.pk if source else None,
            "intubated": assessment.intubated,
            "unable_to_assess": assessment.unable_to_assess,
            "is_second_opinion": assessment.is_second_opinion,
        },
        request=request,
    )
    if decided:
        audit_record(
            action="case.decided",
            actor=nurse,
            unit=case.unit,
            obj=case,
            before=before,
            after={"status": case.status, "final_pain": case.final_pain, "assessments": len(all_assessments)},
            request=request,
        )
        disagreement_flag(case=case, assessments=all_assessments, now=now)
    if assessment.pain and source is None:
        alert_raise(
            neonate=case.neonate, source=Alert.Source.NURSE, assessment=assessment, prediction=case.prediction, at=now
        )
    logger.info(
        "case %s assessed by %s: %s total %s pain %s%s",
        case.pk,
        nurse.pk,
        assessment.kind,
        assessment.total,
        assessment.pain,
        " (decided)" if decided else "",
    )
    return assessment


@transaction.atomic
def face_box_correction_create(
    *, frame: Frame, nurse: User, x: int = 0, y: int = 0, w: int = 0, h: int = 0, no_face: bool = False, request=None
) -> FaceBoxCorrection:
    """Store a nurse's corrected face box (or "no face in this frame"): detector training data."""
    _ensure_clinician_of_unit(user=nurse, unit_id=frame.unit_id, roles=(Role.NURSE, Role.UNIT_ADMIN))
    if no_face:
        x = y = w = h = 0
    else:
        errors: dict[str, list[str]] = {}
        values = {}
        for name, raw in (("x", x), ("y", y), ("w", w), ("h", h)):
            try:
                values[name] = int(raw)
            except (TypeError, ValueError):
                errors[name] = ["Must be a whole number of pixels."]
        if not errors:
            x, y, w, h = values["x"], values["y"], values["w"], values["h"]
            if x < 0 or x >= frame.width:
                errors["x"] = [f"Must be from 0 to {frame.width - 1}."]
            if y < 0 or y >= frame.height:
                errors["y"] = [f"Must be from 0 to {frame.height - 1}."]
            if w < 1 or x + w > frame.width:
                errors["w"] = [f"Must be at least 1 and keep the box inside the {frame.width}-pixel-wide frame."]
            if h < 1 or y + h > frame.height:
                errors["h"] = [f"Must be at least 1 and keep the box inside the {frame.height}-pixel-high frame."]
        if errors:
            raise ValidationError(errors)
    correction = FaceBoxCorrection.objects.create(frame=frame, nurse=nurse, x=x, y=y, w=w, h=h, no_face=bool(no_face))
    audit_record(
        action="facebox.corrected",
        actor=nurse,
        unit=frame.unit,
        obj=correction,
        after={"frame": frame.pk, "x": x, "y": y, "w": w, "h": h, "no_face": bool(no_face)},
        request=request,
    )
    return correction


@transaction.atomic
def alert_acknowledge(*, alert: Alert, actor: User, note: str = "", request=None) -> Alert:
    """The pain team (or the unit's nurse) confirms it has seen the alert; the note says what was done."""
    _ensure_clinician_of_unit(user=actor, unit_id=alert.unit_id, roles=(Role.NURSE, Role.UNIT_ADMIN))
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ValidationError({"note": [f"At most {NOTE_MAX} characters."]})
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.acknowledged_at is not None:
        raise AlertConflict("This alert was already acknowledged.", code="acknowledged")
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = actor
    alert.ack_note = note
    alert.save(update_fields=["acknowledged_at", "acknowledged_by", "ack_note"])
    audit_record(
        action="alert.acknowledged",
        actor=actor,
        unit=alert.unit,
        obj=alert,
        before={"acknowledged_at": None},
        after={
            "acknowledged_at": alert.acknowledged_at.isoformat(),
            "note": note,
            "suppressed_count": alert.suppressed_count,
        },
        request=request,
    )
    return alert
