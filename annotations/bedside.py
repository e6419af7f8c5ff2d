"""Going to the cot: a case "observing at bedside", and one bedside observation resolving the baby's open cases.

NIPS is scored after watching the baby for about a minute (Lawrence et al. 1993). "Go to the cot"
claims the case (or extends the nurse's claim) and marks it observing at bedside, so the case
page shows a one-minute observation timer and nobody else takes it meanwhile. The observation
she then records at the cot covers the baby, not one frame: it also resolves every other open
case of that baby whose frame was captured in the unit's bedside window before it
(``UnitSettings.bedside_window_minutes``, default 10), each getting a copy of the assessment
that names its source (``NipsAssessment.bedside_source``): see
:func:`annotations.bedside_selectors.bedside_related_cases` and ``annotations.services.assessment_create``.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from annotations import services
from annotations.bedside_selectors import bedside_related_cases, frames_around
from triage.models import TriageCase, User
from triage.services import audit_record

__all__ = [
    "OBSERVATION_SECONDS",
    "bedside_related_cases",
    "case_bedside_start",
    "case_observing_at_bedside",
    "frames_around",
]

OBSERVATION_SECONDS = 60
"""NIPS asks for about a minute of watching the baby."""


@transaction.atomic
def case_bedside_start(*, case: TriageCase, nurse: User, request=None) -> TriageCase:
    """Claim ``case`` (or extend her claim) and mark it observing at bedside from now.

    Raises what :func:`annotations.services.case_claim` raises (held by another nurse, decided,
    already scored, not a nurse of the unit).
    """
    case = services.case_claim(case=case, nurse=nurse, request=request)
    # Pressed again while observing: the timer keeps running from the first press of this claim.
    if case.bedside_started_at is None or case.bedside_started_at < case.claimed_at:
        case.bedside_started_at = timezone.now()
        case.save(update_fields=["bedside_started_at"])
    audit_record(
        action="case.bedside_started",
        actor=nurse,
        unit=case.unit,
        obj=case,
        after={
            "bedside_started_at": case.bedside_started_at.isoformat(),
            "claim_expires_at": case.claim_expires_at.isoformat(),
        },
        request=request,
    )
    return case


def case_observing_at_bedside(case: TriageCase, now=None) -> bool:
    """A live claim that went to the cot (a later, ordinary claim is not: the mark belongs to the claim)."""
    started = case.bedside_started_at
    return bool(started and case.claimed_at and started >= case.claimed_at and case.claim_is_live(now))
