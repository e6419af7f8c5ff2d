"""Neonates: creation with an audit row."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

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
    """Register a neonate in a unit (MRN unique within the unit); audited.

    Only the unit's own MRNs are checked: another unit's MRN gets the same answer as a free one,
    so the answer never tells whether a baby is registered elsewhere.
    """
    from django.core.exceptions import ValidationError

    mrn = (mrn or "").strip()
    taken = ValidationError({"mrn": ["A neonate with this MRN is already registered in your unit."]})
    if Neonate.objects.filter(unit=unit, mrn=mrn).exists():
        raise taken
    neonate = Neonate(unit=unit, mrn=mrn, bed=(bed or "").strip(), gestational_age_weeks=gestational_age_weeks)
    neonate.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            neonate.save()
    except IntegrityError:  # registered by a colleague a moment ago
        raise taken from None
    audit_record(
        action="neonate.created",
        actor=actor,
        unit=unit,
        obj=neonate,
        after={"mrn": mrn, "bed": neonate.bed},
        request=request,
    )
    return neonate
