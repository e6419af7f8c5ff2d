"""Celery tasks of the ehr app: thin, ids in, one service each."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from ehr import services
from ehr.models import BulkExport, OutboxMessage

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, OSError)


@shared_task(
    name="ehr.tasks.bulk_export_run",
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    max_retries=3,
    soft_time_limit=1800,
    time_limit=1900,
)
def bulk_export_run(export_id: str) -> None:
    if not BulkExport.objects.filter(pk=export_id).exists():
        logger.warning("bulk export %s no longer exists; message dropped", export_id)
        return
    services.bulk_export_run(export_id=export_id)


@shared_task(name="ehr.tasks.outbox_deliver", bind=True, acks_late=True, max_retries=8)
def outbox_deliver(self, message_id: int) -> str | None:
    """POST one outbox message; on failure retry with the message's backoff (the sweep is the safety net)."""
    message = OutboxMessage.objects.filter(pk=message_id).only("attempts").first()
    if message is None:
        logger.warning("outbox message %s no longer exists; dropped", message_id)
        return None
    outcome = services.outbox_deliver(message_id=message_id)
    if outcome == "retry" and self.request.retries < self.max_retries:
        raise self.retry(countdown=services.backoff_seconds(message.attempts + 1))
    return outcome


@shared_task(name="ehr.tasks.fhir_sweep")
def fhir_sweep() -> dict:
    """Every minute: publish due outbox messages and queued exports again; delete expired export files."""
    return {"outbox": services.outbox_sweep(), **services.bulk_exports_sweep()}
