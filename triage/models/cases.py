"""Nurse work and its trail: triage cases, alerts, the append-only audit log."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from triage.models.frames import Prediction
from triage.models.units import Neonate, Unit


class TriageCase(models.Model):
    """A prediction below the unit's threshold, waiting for a nurse's NIPS assessment."""

    class Status(models.TextChoices):
        OPEN = "open"
        CLAIMED = "claimed"
        DECIDED = "decided"

    prediction = models.OneToOneField(Prediction, on_delete=models.PROTECT, related_name="case")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="cases")
    neonate = models.ForeignKey(Neonate, on_delete=models.PROTECT, related_name="cases")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # Copied from the prediction so the queue sorts on an index of this table alone.
    confidence = models.FloatField()
    p_pain = models.FloatField(default=0.5, help_text="The model's p(pain), copied: the queue puts likely pain first.")
    is_audit = models.BooleanField(
        default=False,
        help_text="A random automatic verdict sent to a nurse blind (she does not see the model's verdict).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    # The frame's capture time, copied: the dashboard splits fresh from stale frames and groups them
    # per baby on this table alone (issue 13: a frame's age, never the time it reached the queue).
    captured_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    assessments_required = models.PositiveSmallIntegerField(default=1)
    decided_at = models.DateTimeField(null=True, blank=True)
    final_pain = models.BooleanField(null=True, blank=True)
    bedside_started_at = models.DateTimeField(
        null=True, blank=True, help_text="The holder went to the cot to observe the baby (issue 13): since when."
    )

    class Meta:
        indexes = [
            models.Index(fields=["unit", "status", "confidence", "created_at"], name="case_queue_order"),
            # The open queue in its exact order (pain first): a nurse's first page reads ~50 index
            # entries, not every open case of the unit (scripts/bench_queue.py, 1M predictions).
            models.Index(
                "unit",
                F("p_pain").desc(),
                "created_at",
                "id",
                condition=Q(status__in=["open", "claimed"]),
                name="case_queue_open_pain",
            ),
            # The dashboard's per-baby groups: one baby's open cases, fresh (recent capture) apart from stale.
            models.Index(
                "unit",
                "neonate",
                "captured_at",
                condition=Q(status__in=["open", "claimed"]),
                name="case_queue_open_baby_time",
            ),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} [{self.status}]"

    def claim_is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return bool(self.claimed_by_id and self.claim_expires_at and self.claim_expires_at > now)


class Alert(models.Model):
    """A call to the pain-management team. Repeats inside the cooldown are counted, not re-alerted."""

    class Source(models.TextChoices):
        AUTO = "auto"
        NURSE = "nurse"

    neonate = models.ForeignKey(Neonate, on_delete=models.PROTECT, related_name="alerts")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="alerts")
    source = models.CharField(max_length=8, choices=Source.choices)
    prediction = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts")
    assessment = models.ForeignKey(
        "annotations.NipsAssessment", null=True, blank=True, on_delete=models.PROTECT, related_name="alerts"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_event_at = models.DateTimeField(default=timezone.now)
    suppressed_count = models.PositiveIntegerField(default=0)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    ack_note = models.TextField(blank=True)
    escalated_at = models.DateTimeField(
        null=True, blank=True, help_text="Unacknowledged past the unit's escalation time: sent to the charge nurse."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["unit", "acknowledged_at", "-created_at"]), models.Index(fields=["neonate", "-last_event_at"])]

    def __str__(self) -> str:
        return f"Alert {self.pk} for {self.neonate_id} ({self.source})"

    def in_cooldown(self, at, cooldown: timedelta) -> bool:
        return at - self.last_event_at < cooldown


class AppendOnlyQuerySet(models.QuerySet):
    """Bulk update/delete would bypass ``AuditEvent.save``/``delete``: refuse them too."""

    def update(self, **kwargs):
        raise AuditEvent.AppendOnly("Audit events cannot be changed.")

    def delete(self):
        raise AuditEvent.AppendOnly("Audit events cannot be deleted.")

    # What bulk_update() and the deletion collector call underneath update() and delete().
    def _update(self, values):
        raise AuditEvent.AppendOnly("Audit events cannot be changed.")

    def _raw_delete(self, using=None):
        raise AuditEvent.AppendOnly("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    """Append-only record of who did what. A database trigger enforces it; the ORM refuses too."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # No FK constraints: deleting a user or unit must never rewrite history.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    unit = models.ForeignKey(Unit, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["unit", "-created_at"])]

    class AppendOnly(Exception):
        pass

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_username} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise AuditEvent.AppendOnly("Audit events cannot be changed.")
        kwargs["force_insert"] = True
        return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditEvent.AppendOnly("Audit events cannot be deleted.")
