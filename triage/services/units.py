"""Per-unit settings: read with defaults, change with an audit row."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from triage.models import Unit, UnitSettings, User
from triage.services.audit import audit_record

logger = logging.getLogger(__name__)


def unit_settings_get(*, unit: Unit) -> UnitSettings:
    """The unit's triage policy, created with the paper's defaults on first use."""
    settings_row, _ = UnitSettings.objects.get_or_create(unit=unit)
    return settings_row


UNIT_SETTINGS_EDITABLE = (
    "threshold",
    "nips_pain_threshold",
    "alert_cooldown_minutes",
    "alert_escalation_minutes",
    "claim_timeout_minutes",
    "double_scoring_share",
    "missed_pain_target",
    "device_offline_minutes",
    "alert_rule_k",
    "alert_rule_n",
    "alert_rule_window_seconds",
    "audit_share",
    "keyframe_period_s",
    "device_token_days",
    "person_token_hours",
    "stale_after_minutes",
    "bedside_window_minutes",
)


def unit_settings_snapshot(settings_row: UnitSettings) -> dict[str, Any]:
    """The editable policy as plain JSON (what the audit log stores as before/after)."""
    return {name: getattr(settings_row, name) for name in UNIT_SETTINGS_EDITABLE}


def unit_settings_can_change(*, user, unit: Unit) -> bool:
    """Only the unit's own admin (or a superuser) changes its triage policy."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or (user.is_unit_admin and user.unit_id == unit.pk))


@transaction.atomic
def unit_settings_update(*, unit: Unit, actor: User | None, changes: dict, request=None) -> UnitSettings:
    """Validate and apply ``changes`` to the unit's policy; audited with before/after.

    Raises ``django.core.exceptions.ValidationError`` (field errors) for unknown fields or bad
    values, ``PermissionDenied`` when ``actor`` is not the unit's admin. ``actor=None`` is the
    system (management commands).
    """
    from django.core.exceptions import PermissionDenied, ValidationError

    if actor is not None and not unit_settings_can_change(user=actor, unit=unit):
        raise PermissionDenied("Only this unit's admin may change its settings.")
    unknown = sorted(set(changes) - set(UNIT_SETTINGS_EDITABLE))
    if unknown:
        raise ValidationError({name: ["Not an editable unit setting."] for name in unknown})
    settings_row = UnitSettings.objects.select_for_update().get(pk=unit_settings_get(unit=unit).pk)
    before = unit_settings_snapshot(settings_row)
    for name, value in changes.items():
        if value == "" and name == "missed_pain_target":
            value = None
        setattr(settings_row, name, value)
    # full_clean coerces ("0.6" -> 0.6) and runs the field validators (threshold in [0.5, 1] ...).
    settings_row.full_clean(exclude=["unit"])
    after = unit_settings_snapshot(settings_row)
    if after == before:
        return settings_row
    settings_row.save()
    changed = {k for k in after if after[k] != before[k]}
    audit_record(
        action="unit_settings.updated",
        actor=actor,
        unit=unit,
        obj=settings_row,
        before={k: before[k] for k in sorted(changed)},
        after={k: after[k] for k in sorted(changed)},
        request=request,
    )
    logger.info("unit %s settings changed: %s", unit.code, ", ".join(sorted(changed)))
    return settings_row
