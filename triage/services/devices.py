"""Bedside camera health: the agent's heartbeat (version, spool backlog, the neonate it watches)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from triage.models import Device, Neonate
from triage.services.audit import audit_record

logger = logging.getLogger(__name__)


@transaction.atomic
def device_heartbeat_record(
    *, device: Device, agent_version: str, spool_backlog: int, neonate_mrn: str = "", request=None
) -> Device:
    """Record a camera's heartbeat: last contact now, its agent version and spool backlog.

    ``neonate_mrn`` (the agent's ``--neonate``) assigns the camera to that neonate of its own unit;
    a change of assignment is audited. An MRN that is not an active neonate of the camera's unit is
    refused (``ValidationError``), the same answer as an upload for it.
    """
    from django.core.exceptions import ValidationError

    device = Device.objects.select_for_update(of=("self",)).select_related("neonate").get(pk=device.pk)
    neonate = device.neonate
    if neonate_mrn:
        neonate = Neonate.objects.filter(unit_id=device.unit_id, mrn=neonate_mrn, active=True).first()
        if neonate is None:
            raise ValidationError({"neonate": [f"No active neonate with MRN {neonate_mrn!r} in your unit."]})
    if neonate != device.neonate:
        audit_record(
            action="device.assigned",
            actor=device.user,
            unit=device.unit,
            obj=device,
            before={"neonate": device.neonate.mrn if device.neonate else None},
            after={"neonate": neonate.mrn if neonate else None},
            request=request,
        )
        logger.info("camera %s now watches %s", device.name, neonate)
    now = timezone.now()
    device.neonate = neonate
    device.agent_version = agent_version[:32]
    device.spool_backlog = spool_backlog
    device.health_reported_at = now
    device.last_seen_at = now
    device.save(update_fields=["neonate", "agent_version", "spool_backlog", "health_reported_at", "last_seen_at"])
    return device


@transaction.atomic
def device_assign(*, device: Device, neonate: Neonate | None, actor, request=None) -> Device:
    """The unit admin points a camera at a baby (its bed) or at none; audited.

    The baby must be an admitted baby of the camera's unit. A running agent started with
    ``--neonate`` reports its own MRN with each heartbeat and wins over this; one started without
    it keeps the assignment made here.
    """
    from django.core.exceptions import ValidationError

    device = Device.objects.select_for_update(of=("self",)).select_related("neonate").get(pk=device.pk)
    if neonate is not None and (neonate.unit_id != device.unit_id or not neonate.active):
        raise ValidationError({"neonate": ["Choose an admitted baby of the camera's unit."]})
    if neonate == device.neonate:
        return device
    audit_record(
        action="device.assigned",
        actor=actor,
        unit=device.unit,
        obj=device,
        before={"neonate": device.neonate.mrn if device.neonate else None},
        after={"neonate": neonate.mrn if neonate else None, "bed": neonate.bed if neonate else None},
        request=request,
    )
    device.neonate = neonate
    device.save(update_fields=["neonate"])
    return device
