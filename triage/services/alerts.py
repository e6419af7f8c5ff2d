"""Alerts to the pain-management team (one per neonate inside the cooldown)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from triage.models import Alert, Neonate, Prediction
from triage.services.audit import audit_record
from triage.services.units import unit_settings_get

logger = logging.getLogger(__name__)


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
    if (
        latest is not None
        and cooldown
        and latest.acknowledged_at
        and at - latest.acknowledged_at < cooldown
        and latest.in_cooldown(at, cooldown)
    ):
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
