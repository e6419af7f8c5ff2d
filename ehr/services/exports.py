"""FHIR Bulk Data export: kick-off (a row, a task after commit), the run (NDJSON per type), cancel, expiry."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotations.models import NipsAssessment
from ehr import resources, selectors
from ehr.models import BulkExport
from triage.models import Prediction
from triage.services import audit_record
from triage.services.enqueue import task_publish

logger = logging.getLogger("neopain.fhir")

EXPORT_RUN = "ehr.tasks.bulk_export_run"
EXPORT_TYPES = ("Patient", "Practitioner", "Device", "Observation", "Flag")
_BUILDERS = {
    "Patient": resources.patient,
    "Practitioner": resources.practitioner,
    "Device": resources.device,
    "Flag": resources.alert_flag,
}


def _observation(row) -> dict:
    if isinstance(row, NipsAssessment):
        return resources.nips_observation(row)
    if isinstance(row, Prediction):
        return resources.ai_observation(row)
    raise TypeError(type(row))


def _publish(export_id) -> None:
    try:
        task_publish(task_name=EXPORT_RUN, args=[str(export_id)])
    except Exception as exc:  # broker down: the row stays queued and the sweep publishes it again
        logger.warning("broker unavailable, export %s stays queued: %s: %s", export_id, type(exc).__name__, exc)


@transaction.atomic
def bulk_export_start(
    *, user, unit_id: int | None, since, types: list[str], request_url: str, request=None
) -> BulkExport:
    export = BulkExport.objects.create(
        unit_id=unit_id, requested_by=user, since=since, types=types, request_url=request_url[:2000]
    )
    audit_record(
        action="fhir.export.started",
        actor=user,
        unit=export.unit,
        obj=export,
        after={"since": since.isoformat() if since else None, "types": types},
        request=request,
    )
    transaction.on_commit(lambda: _publish(export.pk))
    return export


def bulk_export_run(*, export_id) -> BulkExport | None:
    """Write the export's NDJSON files; a rerun of a finished or cancelled export does nothing."""
    claimed = BulkExport.objects.filter(pk=export_id, status=BulkExport.Status.QUEUED).update(
        status=BulkExport.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    export = BulkExport.objects.get(pk=export_id)
    # Rows recorded after this instant may or may not be in the files: the next _since starts here.
    transaction_time = timezone.now()
    try:
        files = []
        rows_by_type = selectors.export_rows(unit_id=export.unit_id, since=export.since)
        for kind in export.types or EXPORT_TYPES:
            build = _BUILDERS.get(kind, _observation)
            lines = [json.dumps(build(row), separators=(",", ":")) for row in rows_by_type[kind]]
            if not lines:
                continue
            name = f"{export.folder}/{kind}.ndjson"
            default_storage.delete(name)
            default_storage.save(name, ContentFile(("\n".join(lines) + "\n").encode()))
            files.append({"type": kind, "name": f"{kind}.ndjson", "count": len(lines)})
    except Exception as exc:
        logger.exception("bulk export %s failed", export_id)
        BulkExport.objects.filter(pk=export_id).update(
            status=BulkExport.Status.FAILED, finished_at=timezone.now(), error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    # A cancel during the run wins: its files are deleted, the row stays cancelled.
    done = BulkExport.objects.filter(pk=export_id, status=BulkExport.Status.RUNNING).update(
        status=BulkExport.Status.DONE, finished_at=timezone.now(), transaction_time=transaction_time, files=files
    )
    if not done:
        _delete_files(export)
    export.refresh_from_db()
    logger.info("bulk export %s: %s", export_id, {f["type"]: f["count"] for f in files})
    return export


def _delete_files(export: BulkExport) -> None:
    try:
        _, names = default_storage.listdir(export.folder)
    except FileNotFoundError:
        return
    for name in names:
        default_storage.delete(f"{export.folder}/{name}")


def bulk_export_cancel(*, export: BulkExport, user, request=None) -> None:
    """DELETE on the status URL: stop (a running task's files are dropped when it ends) and delete the files."""
    BulkExport.objects.filter(pk=export.pk).update(status=BulkExport.Status.CANCELLED, finished_at=timezone.now())
    _delete_files(export)
    audit_record(action="fhir.export.cancelled", actor=user, unit=export.unit, obj=export, request=request)


def bulk_exports_sweep() -> dict[str, int]:
    """Re-publish exports still queued after a minute (broker outage); delete files past their expiry."""
    now = timezone.now()
    stale = list(
        BulkExport.objects.filter(
            status=BulkExport.Status.QUEUED, created_at__lt=now - timedelta(minutes=1)
        ).values_list("pk", flat=True)
    )
    for pk in stale:
        _publish(pk)
    # A worker lost mid-run (its message is redelivered to a task that finds the row running): failed.
    BulkExport.objects.filter(status=BulkExport.Status.RUNNING, started_at__lt=now - timedelta(minutes=30)).update(
        status=BulkExport.Status.FAILED, finished_at=now, error="The export stopped (worker lost); start a new one."
    )
    expired = BulkExport.objects.filter(
        status=BulkExport.Status.DONE, finished_at__lt=now - timedelta(hours=settings.NEOPAIN_FHIR_EXPORT_HOURS)
    )
    count = 0
    for export in expired:
        _delete_files(export)
        BulkExport.objects.filter(pk=export.pk).update(status=BulkExport.Status.CANCELLED, error="expired")
        count += 1
    return {"republished": len(stale), "expired": count}


__all__ = ["EXPORT_TYPES", "bulk_export_cancel", "bulk_export_run", "bulk_export_start", "bulk_exports_sweep"]
