"""Frame claims in the worker: take a batch of queued frames atomically, release or fail them."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from triage.models import Frame, ModelVersion, Unit

logger = logging.getLogger(__name__)


def frames_claim(*, frame_ids: list[int], batch_max: int) -> list[int]:
    """Atomically move the given frames (if claimable) plus other waiting frames to ``processing``.

    Claimable: ``queued``, or ``processing`` longer than the hard time limit (its worker died).
    On PostgreSQL ``SKIP LOCKED`` lets several workers claim side by side; SQLite serialises
    writers (IMMEDIATE transactions), which gives the same guarantee.
    """
    from django.conf import settings
    from django.db import connection
    from django.db.models import F, Q

    now = timezone.now()
    lease_cutoff = now - timedelta(seconds=max(settings.CELERY_TASK_TIME_LIMIT, 60))
    claimable = Q(status=Frame.Status.QUEUED) | Q(status=Frame.Status.PROCESSING, status_changed_at__lt=lease_cutoff)
    lock = connection.features.has_select_for_update_skip_locked
    # Most messages of a batch find their frame already claimed by the batch's first message: a
    # plain read says so without a write transaction (on SQLite, IMMEDIATE: the database's write
    # lock). Only a frame that was claimable a moment ago goes on to the locked claim below.
    if not Frame.objects.filter(pk__in=frame_ids).filter(claimable).exists():
        return []
    with transaction.atomic():
        own_qs = Frame.objects.filter(pk__in=frame_ids).filter(claimable)
        if lock:
            own_qs = own_qs.select_for_update(skip_locked=True)
        own = list(own_qs.values_list("pk", "unit_id"))
        ids = [pk for pk, _ in own]
        if own and batch_max > len(ids):
            # Batch with other waiting frames served by the same model (units sharing it).
            units = _units_sharing_model(unit_id=own[0][1])
            extra_qs = Frame.objects.filter(status=Frame.Status.QUEUED, unit_id__in=units).exclude(pk__in=ids)
            if lock:
                extra_qs = extra_qs.select_for_update(skip_locked=True)
            ids += list(extra_qs.order_by("received_at", "pk").values_list("pk", flat=True)[: batch_max - len(ids)])
        if ids:
            Frame.objects.filter(pk__in=ids).update(
                status=Frame.Status.PROCESSING, status_changed_at=now, attempts=F("attempts") + 1
            )
    return ids


def _units_sharing_model(*, unit_id: int) -> list[int]:
    """Units whose frames the same classifier scores as ``unit_id``'s (batching partners)."""
    from triage.selectors import active_model_for_unit

    unit = Unit.objects.get(pk=unit_id)
    model = active_model_for_unit(unit=unit)
    if model is None or model.unit_id is not None:
        return [unit_id]
    with_own = ModelVersion.objects.filter(
        kind=ModelVersion.Kind.CLASSIFIER, status=ModelVersion.Status.ACTIVE, unit__isnull=False
    ).values("unit_id")
    return list(Unit.objects.exclude(pk__in=with_own).values_list("pk", flat=True))


def frames_release(*, frame_ids: list[int], reason: str = "") -> None:
    """Hand frames back to the queue (a later task or the sweeper picks them up)."""

    if frame_ids:
        Frame.objects.filter(pk__in=frame_ids, status=Frame.Status.PROCESSING).update(
            status=Frame.Status.QUEUED, reason=reason, status_changed_at=timezone.now()
        )


def frames_fail(*, frame_ids: list[int], reason: str) -> None:

    if frame_ids:
        Frame.objects.filter(pk__in=frame_ids, status=Frame.Status.PROCESSING).update(
            status=Frame.Status.FAILED, reason=reason[:1000], status_changed_at=timezone.now()
        )
        logger.warning("frames %s failed: %s", frame_ids, reason)
