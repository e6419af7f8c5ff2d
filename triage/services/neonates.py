"""Neonates: creation with an audit row."""

from __future__ import annotations

import logging

from django.db import transaction

from triage.models import Neonate, Unit, User
from triage.services.audit import audit_record

logger = logging.getLogger(__name__)


@transaction.atomic
def neonate_create(
    *,
    unit: Unit,
    mrn: str,
    bed: str = "",
    gestational_age_weeks=None,
    actor: User | None = None,
    request=None,
) -> Neonate:
    """Register a neonate in a unit (MRN unique hospital-wide); audited."""
    from django.core.exceptions import ValidationError

    mrn = (mrn or "").strip()
    if Neonate.objects.filter(mrn=mrn).exists():
        raise ValidationError({"mrn": ["A neonate with this MRN is already registered."]})
    neonate = Neonate(unit=unit, mrn=mrn, bed=(bed or "").strip(), gestational_age_weeks=gestational_age_weeks)
    neonate.full_clean(validate_unique=False)
    neonate.save()
    audit_record(
        action="neonate.created",
        actor=actor,
        unit=unit,
        obj=neonate,
        after={"mrn": mrn, "bed": neonate.bed},
        request=request,
    )
    return neonate
