"""Audit trail: one append-only row per consequential action."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone

from triage.addresses import client_ip  # re-exported: triage.services.client_ip
from triage.models import AuditEvent, Unit, User

logger = logging.getLogger(__name__)


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


_IMAGE_VIEW_DEDUPE = timedelta(minutes=5)


def image_view_record(*, user: User, kind: str, obj, unit, request=None) -> None:
    """Audit a read of patient images. Repeats by the same user of the same image within 5 min are one row
    (a live page re-requesting a thumbnail is not a new look at the patient)."""
    action = f"{kind}.viewed"
    since = timezone.now() - _IMAGE_VIEW_DEDUPE
    if AuditEvent.objects.filter(action=action, actor=user, object_id=str(obj.pk), created_at__gte=since).exists():
        return
    audit_record(action=action, actor=user, unit=unit, obj=obj, request=request)
