"""Writes for the triage domain. Each service owns its transaction."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from triage.models import Alert, AuditEvent, Neonate, Prediction, Unit, UnitSettings, User

logger = logging.getLogger(__name__)


def client_ip(request) -> str | None:
    """The caller's address as seen by Django (behind a proxy, configure it to set REMOTE_ADDR)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    action: str,
    actor: User | None = None,
    unit: Unit | None = None,
    obj: Any = None,
    object_type: str = "",
    object_id: str | int = "",
    before: dict | None = None,
    after: dict | None = None,
    request=None,
    actor_username: str = "",
) -> AuditEvent:
    """Append one audit row. ``obj`` (a model instance) fills object type and id."""
    if obj is not None:
        object_type = object_type or obj._meta.label
        object_id = object_id or obj.pk
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    if unit is None and actor is not None:
        unit = getattr(actor, "unit", None)
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_username=actor_username or (actor.get_username() if actor else ""),
        unit=unit,
        object_type=object_type,
        object_id=str(object_id or ""),
        before=before,
        after=after,
        ip=client_ip(request),
    )


def unit_settings_get(*, unit: Unit) -> UnitSettings:
    """The unit's triage policy, created with the paper's defaults on first use."""
    settings_row, _ = UnitSettings.objects.get_or_create(unit=unit)
    return settings_row


@transaction.atomic
def alert_raise(
    *,
    neonate: Neonate,
    source: str,
    prediction: Prediction | None = None,
    assessment=None,
    at=None,
) -> tuple[Alert, bool]:
    """Raise a pain alert, or count it on the open episode's alert if inside the cooldown.

    Returns (alert, created). The neonate row is locked so two workers can't open two episodes.
    """
    at = at or timezone.now()
    Neonate.objects.select_for_update().filter(pk=neonate.pk).first()
    cooldown = timedelta(minutes=unit_settings_get(unit=neonate.unit).alert_cooldown_minutes)
    latest = Alert.objects.filter(neonate=neonate).order_by("-last_event_at").first()
    if latest is not None and latest.acknowledged_at is None and cooldown and latest.in_cooldown(at, cooldown):
        Alert.objects.filter(pk=latest.pk).update(suppressed_count=latest.suppressed_count + 1, last_event_at=at)
        latest.refresh_from_db()
        return latest, False
    if latest is not None and cooldown and latest.acknowledged_at and at - latest.acknowledged_at < cooldown and latest.in_cooldown(at, cooldown):
        # Acknowledged moments ago: the team is already at the bedside; count, don't re-page.
        Alert.objects.filter(pk=latest.pk).update(suppressed_count=latest.suppressed_count + 1, last_event_at=at)
        latest.refresh_from_db()
        return latest, False
    alert = Alert.objects.create(
        neonate=neonate,
        unit=neonate.unit,
        source=source,
        prediction=prediction,
        assessment=assessment,
        created_at=at,
        last_event_at=at,
    )
    audit_record(action="alert.raised", unit=neonate.unit, obj=alert, after={"source": source, "neonate": neonate.mrn})
    logger.info("alert %s raised for neonate %s (source %s)", alert.pk, neonate.pk, source)
    return alert, True
