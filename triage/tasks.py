"""Celery tasks: thin wrappers that take ids, call one service and retry transient faults.

Inference tasks run on the ``inference`` queue (see ``CELERY_TASK_ROUTES``); acks are late and a
lost worker's message is redelivered, so every task is idempotent.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from triage import services
from triage.models import Clip, Frame

logger = logging.getLogger(__name__)

# Transient: a database blip, a busy SQLite file, a storage hiccup. Backoff 2, 4, 8 ... s (max 5 min).
TRANSIENT = (OperationalError, InterfaceError, OSError, services.FramesRetry)
RETRY_OPTIONS = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(name="triage.tasks.frame_process", acks_late=True, reject_on_worker_lost=True, **RETRY_OPTIONS)
def frame_process(frame_id: int) -> dict | None:
    """Score one uploaded frame (and any waiting frames batched with it)."""
    if not Frame.objects.filter(pk=frame_id).exists():
        logger.warning("frame %s no longer exists; message dropped", frame_id)
        return None
    return services.frames_process(frame_ids=[frame_id])


@shared_task(name="triage.tasks.clip_process", acks_late=True, reject_on_worker_lost=True, **RETRY_OPTIONS)
def clip_process(clip_id: int) -> int | None:
    """Extract a clip's keyframes; each becomes a queued frame."""
    if not Clip.objects.filter(pk=clip_id).exists():
        logger.warning("clip %s no longer exists; message dropped", clip_id)
        return None
    return services.clip_process(clip_id=clip_id)


@shared_task(name="triage.tasks.frames_sweep", acks_late=True, **RETRY_OPTIONS)
def frames_sweep() -> dict:
    """Re-queue frames stuck in queued/processing (run by beat every minute)."""
    return services.frames_sweep()


@shared_task(name="triage.tasks.alerts_escalate", **RETRY_OPTIONS)
def alerts_escalate() -> int:
    """Send alerts nobody acknowledged in the unit's escalation time to the charge nurse (beat: every minute)."""
    return services.alerts_escalate()
