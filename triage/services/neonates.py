"""Neonates: admission (creation or readmission) and discharge, each with an audit row."""

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


@transaction.atomic
def neonate_admit(
    *, unit: Unit, mrn: str, bed: str = "", gestational_age_weeks=None, actor: User | None = None, request=None
) -> Neonate:
    """Admit a baby: a new MRN is registered (:func:`neonate_create`); a discharged one is readmitted.

    Readmission keeps the baby's history (frames, cases, assessments under one MRN) with the new bed.
    """
    from django.core.exceptions import ValidationError

    mrn = (mrn or "").strip()
    existing = Neonate.objects.select_for_update().filter(unit=unit, mrn=mrn).first()
    if existing is None:
        return neonate_create(
            unit=unit, mrn=mrn, bed=bed, gestational_age_weeks=gestational_age_weeks, actor=actor, request=request
        )
    if existing.active:
        raise ValidationError({"mrn": ["This baby is already admitted in your unit."]})
    before = {
        "bed": existing.bed,
        "discharged_at": existing.discharged_at.isoformat() if existing.discharged_at else None,
    }
    existing.active = True
    existing.discharged_at = None
    existing.bed = (bed or "").strip()
    if gestational_age_weeks is not None:
        existing.gestational_age_weeks = gestational_age_weeks
    existing.full_clean(validate_unique=False, validate_constraints=False)
    existing.save(update_fields=["active", "discharged_at", "bed", "gestational_age_weeks"])
    audit_record(
        action="neonate.readmitted",
        actor=actor,
        unit=unit,
        obj=existing,
        before=before,
        after={"bed": existing.bed},
        request=request,
    )
    return existing


@transaction.atomic
def neonate_discharge(*, neonate: Neonate, actor: User | None = None, request=None) -> Neonate:
    """Discharge a baby: no longer active (uploads for the MRN are refused), cameras watching it freed.

    Its frames, cases and assessments stay (they are training labels and the audit trail).
    """
    from django.utils import timezone

    from triage.models import Device

    neonate = Neonate.objects.select_for_update().get(pk=neonate.pk)
    if not neonate.active:
        return neonate
    neonate.active = False
    neonate.discharged_at = timezone.now()
    neonate.save(update_fields=["active", "discharged_at"])
    for camera in Device.objects.select_for_update().filter(neonate=neonate):
        camera.neonate = None
        camera.save(update_fields=["neonate"])
        audit_record(
            action="device.assigned",
            actor=actor,
            unit=neonate.unit,
            obj=camera,
            before={"neonate": neonate.mrn},
            after={"neonate": None, "why": "baby discharged"},
            request=request,
        )
    audit_record(
        action="neonate.discharged",
        actor=actor,
        unit=neonate.unit,
        obj=neonate,
        before={"active": True, "bed": neonate.bed},
        after={"active": False},
        request=request,
    )
    logger.info("neonate %s discharged from %s", neonate.pk, neonate.unit_id)
    return neonate
