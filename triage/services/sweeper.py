"""The sweeper: re-publish frames and clips stuck in ``queued``/``processing``."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from triage.models import Clip, Frame
from triage.services import enqueue

logger = logging.getLogger(__name__)

#: The ``reason`` of a frame queued while its unit has no active model; activation re-publishes them.
WAITING_FOR_MODEL = "waiting for an active model (register one: manage.py register_model BUNDLE --activate)"


def frames_sweep(
    *, stuck_seconds: int | None = None, limit: int = 1000, queued_reason_prefix: str | None = None
) -> dict[str, int]:
    """Re-queue frames (and clips) stuck in ``queued``/``processing`` and publish them again.

    ``queued`` past the limit usually means the broker was down at upload time; ``processing``
    past it means a worker died. Duplicate messages are harmless (claims are atomic).
    """
    from django.conf import settings

    stuck_seconds = settings.NEOPAIN_STUCK_FRAME_SECONDS if stuck_seconds is None else stuck_seconds
    cutoff = timezone.now() - timedelta(seconds=stuck_seconds)
    stuck = Frame.objects.filter(
        status__in=[Frame.Status.QUEUED, Frame.Status.PROCESSING], status_changed_at__lte=cutoff
    )
    if queued_reason_prefix is not None:
        stuck = Frame.objects.filter(status=Frame.Status.QUEUED, reason__startswith=queued_reason_prefix)
    ids = list(stuck.order_by("status_changed_at").values_list("pk", flat=True)[:limit])
    if ids:
        with transaction.atomic():
            Frame.objects.filter(pk__in=ids, status=Frame.Status.PROCESSING).update(
                status=Frame.Status.QUEUED, reason="re-queued after a worker stalled", status_changed_at=timezone.now()
            )
    clip_ids = (
        list(
            Clip.objects.filter(status=Clip.Status.QUEUED, received_at__lte=cutoff).values_list("pk", flat=True)[:limit]
        )
        if queued_reason_prefix is None
        else []
    )
    published = enqueue.frames_enqueue(frame_ids=ids) if ids else 0
    clips_published = enqueue.clips_enqueue(clip_ids=clip_ids) if clip_ids else 0
    if ids or clip_ids:
        logger.info("sweeper: %d stuck frames (%d published), %d clips", len(ids), published, len(clip_ids))
    return {"frames": len(ids), "published": published, "clips": len(clip_ids), "clips_published": clips_published}
