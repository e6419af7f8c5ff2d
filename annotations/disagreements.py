"""Double-scoring disagreement (issue 13, item 8): flagged to the charge nurse, shown on the case, reviewed.

When the two blind scores of a double-scored case disagree on pain (one says pain, the other no
pain: by the NIPS rule for a full observation, by the nurse's own call for a face-only or partial
review), the case is flagged when it is decided. The flag shows on every clinician's dashboard
and on the case with both scores, until a unit admin or a nurse who did not score the case marks
it reviewed (``POST /api/v1/cases/<id>/disagreement/review/``). The pair counts in the nurse-nurse
kappa (:mod:`annotations.agreement`), and the case gives no training label
(:func:`annotations.nurse_labels.case_label`).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from annotations.models import NipsAssessment, ScoreDisagreement
from triage.models import Role, TriageCase, User
from triage.services import audit_record

REVIEW_NOTE_MAX = 2000


class DisagreementReviewed(Exception):
    """The disagreement was already reviewed. HTTP 409."""

    code = "reviewed"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def disagreement_flag(*, case: TriageCase, assessments: list[NipsAssessment], now) -> ScoreDisagreement | None:
    """Flag ``case`` if its first two scores with a verdict disagree on pain; ``None`` if they agree (or fewer)."""
    scored = [a for a in assessments if a.pain is not None]
    if len(scored) < 2 or scored[0].pain == scored[1].pain:
        return None
    flag, created = ScoreDisagreement.objects.get_or_create(
        case=case, defaults={"unit_id": case.unit_id, "first": scored[0], "second": scored[1], "flagged_at": now}
    )
    if created:
        audit_record(
            action="disagreement.flagged",
            actor=None,
            unit=case.unit,
            obj=flag,
            after={
                "case": case.pk,
                "first": {
                    "assessment": scored[0].pk,
                    "kind": scored[0].kind,
                    "total": scored[0].total,
                    "pain": scored[0].pain,
                },
                "second": {
                    "assessment": scored[1].pk,
                    "kind": scored[1].kind,
                    "total": scored[1].total,
                    "pain": scored[1].pain,
                },
            },
        )
    return flag


def disagreements_open(*, user: User) -> QuerySet:
    """The caller's unit's unreviewed disagreements, newest first (superusers: every unit's)."""
    qs = ScoreDisagreement.objects.filter(reviewed_at__isnull=True).select_related(
        "case__neonate", "first__nurse", "second__nurse"
    )
    if not user.is_superuser:
        qs = qs.filter(unit_id=user.unit_id) if user.unit_id else qs.none()
    return qs.order_by("-flagged_at", "-id")


def disagreement_for_case(*, case: TriageCase) -> ScoreDisagreement | None:
    return (
        ScoreDisagreement.objects.select_related("first__nurse", "second__nurse", "reviewed_by")
        .filter(case=case)
        .first()
    )


def disagreement_can_review(*, user: User, flag: ScoreDisagreement) -> bool:
    """A unit admin of the unit, or a nurse of the unit who scored neither side (a superuser too)."""
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    if user.unit_id != flag.unit_id:
        return False
    if user.role == Role.UNIT_ADMIN:
        return True
    return user.role == Role.NURSE and user.pk not in (flag.first.nurse_id, flag.second.nurse_id)


@transaction.atomic
def disagreement_review(*, case: TriageCase, user: User, note: str = "", request=None) -> ScoreDisagreement:
    """Mark ``case``'s disagreement reviewed. Http404 if it has none; PermissionDenied; DisagreementReviewed."""
    flag = ScoreDisagreement.objects.select_for_update().filter(case=case).first()
    if flag is None:
        raise Http404("This case has no disagreement to review.")
    if not disagreement_can_review(user=user, flag=flag):
        raise PermissionDenied("A unit admin, or a nurse who scored neither side, reviews a disagreement.")
    note = (note or "").strip()
    if len(note) > REVIEW_NOTE_MAX:
        raise ValidationError({"note": [f"At most {REVIEW_NOTE_MAX} characters."]})
    if flag.reviewed_at is not None:
        raise DisagreementReviewed("This disagreement was already reviewed.")
    flag.reviewed_at = timezone.now()
    flag.reviewed_by = user
    flag.review_note = note
    flag.save(update_fields=["reviewed_at", "reviewed_by", "review_note"])
    audit_record(
        action="disagreement.reviewed",
        actor=user,
        unit=case.unit,
        obj=flag,
        before={"reviewed_at": None},
        after={"case": case.pk, "reviewed_at": flag.reviewed_at.isoformat(), "note": note},
        request=request,
    )
    return flag
