"""Writes of the ehr app: Bulk Data exports and the push outbox."""

from ehr.services.exports import (
    EXPORT_TYPES,
    bulk_export_cancel,
    bulk_export_run,
    bulk_export_start,
    bulk_exports_sweep,
)
from ehr.services.outbox import (
    backoff_seconds,
    outbox_deliver,
    outbox_due_ids,
    outbox_queue_alert,
    outbox_queue_case,
    outbox_retry,
    outbox_sweep,
    push_enabled,
)

__all__ = [
    "EXPORT_TYPES",
    "backoff_seconds",
    "bulk_export_cancel",
    "bulk_export_run",
    "bulk_export_start",
    "bulk_exports_sweep",
    "outbox_deliver",
    "outbox_due_ids",
    "outbox_queue_alert",
    "outbox_queue_case",
    "outbox_retry",
    "outbox_sweep",
    "push_enabled",
]
