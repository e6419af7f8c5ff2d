"""Exports and outbox rows in the Django admin: read-only (they are made, and audited, in the app)."""

from django.contrib import admin

from ehr.models import BulkExport, OutboxMessage
from triage.admin import ReadOnlyAdmin


@admin.register(BulkExport)
class BulkExportAdmin(ReadOnlyAdmin):
    list_display = ["id", "unit", "requested_by", "status", "since", "created_at", "finished_at"]
    list_filter = ["status"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["id", "unit", "resource_type", "resource_id", "status", "attempts", "last_attempt_at", "sent_at"]
    list_filter = ["status", "resource_type"]
    search_fields = ["resource_id"]
