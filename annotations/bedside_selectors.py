"""Reads for observing the baby (issue 13): the keyframes around a case's frame, the cases a bedside observation covers."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from triage.models import Frame, Prediction, TriageCase, User
from triage.services import unit_settings_get

FRAMES_AROUND_WINDOW = timedelta(minutes=2)
"""A camera's keyframes this close to a case's frame are shown beside it as a sequence."""


def frames_around(*, frame, before: int = 3, after: int = 3) -> list[dict]:
    """The keyframes around ``frame``, oldest first, ``frame`` itself marked: a short sequence to look at.

    A clip's keyframes (in clip order), else the same baby's frames within
    :data:`FRAMES_AROUND_WINDOW`. Each ``{"frame_id", "captured_at", "clip_time_s", "current",
    "crop_prediction_id"}`` (the newest prediction with a stored face crop, else ``None``). Empty
    when there is nothing around it. Two queries.
    """
    if frame.clip_id:
        around = Frame.objects.filter(clip_id=frame.clip_id).order_by("clip_time_s", "captured_at", "id")
    else:
        around = Frame.objects.filter(
            neonate_id=frame.neonate_id,
            captured_at__gte=frame.captured_at - FRAMES_AROUND_WINDOW,
            captured_at__lte=frame.captured_at + FRAMES_AROUND_WINDOW,
        ).order_by("captured_at", "id")
    rows = list(around.exclude(image="").values("id", "captured_at", "clip_time_s")[:200])
    index = next((i for i, row in enumerate(rows) if row["id"] == frame.pk), None)
    if index is None or len(rows) < 2:
        return []
    rows = rows[max(0, index - before) : index + after + 1]
    crops = dict(
        Prediction.objects.filter(frame_id__in=[r["id"] for r in rows])
        .exclude(crop="")
        .order_by("frame_id", "created_at", "id")
        .values_list("frame_id", "id")
    )
    return [
        {
            "frame_id": row["id"],
            "captured_at": row["captured_at"],
            "clip_time_s": row["clip_time_s"],
            "current": row["id"] == frame.pk,
            "crop_prediction_id": crops.get(row["id"]),
        }
        for row in rows
    ]


def bedside_related_cases(*, case: TriageCase, nurse: User, at=None) -> list[TriageCase]:
    """The baby's other open cases one bedside observation at ``at`` (default now) resolves.

    Frames captured in the unit's bedside window before ``at`` (and any later one), not held by
    another nurse, not already scored by her (blind double scoring); oldest frame first.
    """
    at = at or timezone.now()
    window = timedelta(minutes=unit_settings_get(unit=case.unit).bedside_window_minutes)
    candidates = (
        TriageCase.objects.filter(
            neonate_id=case.neonate_id,
            status__in=[TriageCase.Status.OPEN, TriageCase.Status.CLAIMED],
            prediction__frame__captured_at__gte=at - window,
        )
        .exclude(pk=case.pk)
        .exclude(assessments__nurse=nurse)
        .select_related("prediction__frame", "claimed_by")
        .order_by("prediction__frame__captured_at", "id")
    )
    now = timezone.now()
    return [c for c in candidates if not (c.claim_is_live(now) and c.claimed_by_id != nurse.pk)]
