"""Reads for the triage domain: return querysets or plain data, never write."""

from __future__ import annotations

from django.db.models import Q

from triage.models import ModelVersion, Unit


def active_model_for_unit(*, unit: Unit | None, kind: str = ModelVersion.Kind.CLASSIFIER) -> ModelVersion | None:
    """The unit's own active model if it has one, else the global active model."""
    qs = ModelVersion.objects.filter(kind=kind, status=ModelVersion.Status.ACTIVE)
    if unit is not None:
        qs = qs.filter(Q(unit=unit) | Q(unit__isnull=True))
    else:
        qs = qs.filter(unit__isnull=True)
    # Unit-specific first (NULLs sort last on PostgreSQL for DESC? be explicit).
    rows = list(qs)
    rows.sort(key=lambda m: m.unit_id is None)
    return rows[0] if rows else None
