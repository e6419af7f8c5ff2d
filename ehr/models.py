"""FHIR for the EHR: Bulk Data export jobs and the push outbox."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class BulkExport(models.Model):
    """One FHIR Bulk Data ``$export`` request: kicked off by the API, written by a Celery task."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    unit = models.ForeignKey(
        "triage.Unit", null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Blank: every unit."
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    request_url = models.CharField(max_length=2000)
    since = models.DateTimeField(null=True, blank=True)
    types = models.JSONField(default=list, help_text="Resource types asked for (empty: all).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    transaction_time = models.DateTimeField(null=True, blank=True, help_text="The instant the data was read as of.")
    files = models.JSONField(default=list, help_text="[{type, name, count}] written under the export's folder.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"Bulk export {self.pk} [{self.status}]"

    @property
    def folder(self) -> str:
        """Storage folder of its NDJSON files (private media: served only by the authorised file view)."""
        return f"fhir-exports/{self.pk.hex}"


class OutboxMessage(models.Model):
    """One FHIR resource to POST to the EHR (``NEOPAIN_FHIR_ENDPOINT``), written in the transaction that
    decided it: delivered at least once by retries, created once at the EHR by a conditional create."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    unit = models.ForeignKey("triage.Unit", on_delete=models.CASCADE, related_name="+")
    resource_type = models.CharField(max_length=40)
    resource_id = models.CharField(max_length=64)
    reason = models.CharField(max_length=40, help_text="What put it here: assessment, alert.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    location = models.CharField(max_length=500, blank=True, help_text="Where the EHR keeps it (Location header).")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["resource_type", "resource_id"], name="outbox_one_message_per_resource")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbox_due"),
            models.Index(fields=["unit", "status"], name="outbox_unit_status"),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.resource_id} [{self.status}]"
