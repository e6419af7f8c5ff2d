"""Alerts to the pain-management team (one per neonate inside the cooldown).

An automatic pain verdict alerts only when the unit's rule over time holds: at least ``k`` of the
neonate's last ``n`` automatic verdicts, on keyframes captured within ``W`` seconds, are pain
(:func:`alert_rule_fires`). Nurse-confirmed pain alerts at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from triage.models import Alert, Neonate, Prediction, Role, Unit, UnitSettings, User
from triage.services.audit import audit_record
from triage.services.units import unit_settings_get

logger = logging.getLogger(__name__)


def alert_rule_fires(verdicts: Iterable[tuple[object, bool]], *, at, k: int, n: int, window) -> bool:
    """True when at least ``k`` of the last ``n`` verdicts ``(time, is_pain)`` in ``(at - window, at]`` are pain.

    Times may be datetimes (``window`` a timedelta) or seconds (``window`` a number): the worker and
    the ``replay_alerts`` command share this one rule.
    """
    recent = sorted((t, pain) for t, pain in verdicts if at - window < t <= at)[-n:]
    return sum(1 for _t, pain in recent if pain) >= k


def _auto_rule_holds(*, neonate: Neonate, prediction: Prediction, rules) -> bool:
    """The unit's k-of-n-within-W rule at this automatic verdict's keyframe (its capture time)."""
    if rules.alert_rule_k <= 1:
        return True  # this verdict is pain and is among its own last n
    at = prediction.frame.captured_at
    window = timedelta(seconds=rules.alert_rule_window_seconds)
    recent = (
        Prediction.objects.filter(
            frame__neonate=neonate, routed_to=Prediction.Route.AUTO, frame__captured_at__gt=at - window
        )
        # Up to this verdict: a batch records its predictions before raising alerts, and a later
        # keyframe (or one captured at the same instant, scored after it) must not count yet.
        .filter(Q(frame__captured_at__lt=at) | Q(frame__captured_at=at, pk__lte=prediction.pk))
        .order_by("-frame__captured_at", "-pk")
        .values_list("frame__captured_at", "label")[: rules.alert_rule_n]
    )
    verdicts = [(captured_at, label == Prediction.Label.PAIN) for captured_at, label in recent]
    return alert_rule_fires(verdicts, at=at, k=rules.alert_rule_k, n=rules.alert_rule_n, window=window)


@transaction.atomic
def alert_raise(
    *,
    neonate: Neonate,
    source: str,
    prediction: Prediction | None = None,
    assessment=None,
    at=None,
) -> tuple[Alert | None, bool]:
    """Raise a pain alert, or count it on the open episode's alert if inside the cooldown.

    Returns (alert, created); ``(None, False)`` for an automatic verdict the unit's rule over time
    does not (yet) back. The neonate row is locked so two workers can't open two episodes.
    """
    at = at or timezone.now()
    Neonate.objects.select_for_update().filter(pk=neonate.pk).first()
    rules = unit_settings_get(unit=neonate.unit)
    if (
        source == Alert.Source.AUTO
        and prediction is not None
        and not _auto_rule_holds(neonate=neonate, prediction=prediction, rules=rules)
    ):
        logger.info(
            "neonate %s: pain verdict %s below the alert rule (%d of %d in %d s)",
            neonate.pk,
            prediction.pk,
            rules.alert_rule_k,
            rules.alert_rule_n,
            rules.alert_rule_window_seconds,
        )
        return None, False
    cooldown = timedelta(minutes=rules.alert_cooldown_minutes)
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


def alert_escalation_recipients(*, unit: Unit) -> list[User]:
    """Who an escalated alert goes to: the unit's charge nurses; its unit admins when none is named."""
    people = User.objects.filter(is_active=True, unit=unit)
    charge = list(people.filter(is_charge_nurse=True).order_by("username"))
    return charge or list(people.filter(role=Role.UNIT_ADMIN).order_by("username"))


def alerts_escalate(*, now=None) -> int:
    """Escalate every alert left unacknowledged past its unit's ``alert_escalation_minutes``.

    Run every minute by beat (``triage.tasks.alerts_escalate``). Each alert escalates once: the
    row is claimed with a conditional UPDATE, so two overlapping runs never audit it twice. The
    charge nurses see it on every page (badge, banner, notification); the audit row names them.
    Returns how many alerts were escalated.
    """
    now = now or timezone.now()
    waiting = Alert.objects.filter(acknowledged_at__isnull=True, escalated_at__isnull=True)
    unit_ids = set(waiting.values_list("unit_id", flat=True).distinct())
    if not unit_ids:
        return 0
    minutes_by_unit = dict(
        UnitSettings.objects.filter(unit_id__in=unit_ids).values_list("unit_id", "alert_escalation_minutes")
    )
    default = UnitSettings._meta.get_field("alert_escalation_minutes").default
    escalated = 0
    for unit_id in sorted(unit_ids):
        minutes = minutes_by_unit.get(unit_id, default)
        due = waiting.filter(unit_id=unit_id, created_at__lte=now - timedelta(minutes=minutes)).select_related(
            "unit", "neonate"
        )
        for alert in due:
            with transaction.atomic():
                if not Alert.objects.filter(
                    pk=alert.pk, escalated_at__isnull=True, acknowledged_at__isnull=True
                ).update(escalated_at=now):
                    continue  # acknowledged or escalated meanwhile
                recipients = alert_escalation_recipients(unit=alert.unit)
                audit_record(
                    action="alert.escalated",
                    unit=alert.unit,
                    obj=alert,
                    before={"escalated_at": None},
                    after={
                        "escalated_at": now.isoformat(),
                        "unacknowledged_minutes": round((now - alert.created_at).total_seconds() / 60, 1),
                        "escalation_minutes": minutes,
                        "to": [person.get_username() for person in recipients],
                    },
                )
            escalated += 1
            logger.warning(
                "alert %s (bed %s) unacknowledged for %d min: escalated to %s",
                alert.pk,
                alert.neonate.bed or "-",
                minutes,
                ", ".join(p.get_username() for p in recipients) or "nobody (no charge nurse or unit admin)",
            )
    return escalated
