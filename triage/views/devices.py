"""The unit admin's bedside cameras page: last contact, agent version, spool backlog, offline state; assign a camera to a baby."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from triage import selectors
from triage.models import Device, Neonate, Role, Unit
from triage.services.devices import device_assign
from triage.views.access import role_required
from triage.views.unit_admin import admin_unit, back_to


@role_required(Role.UNIT_ADMIN)
def devices(request):
    user = request.user
    unit = admin_unit(request)
    context = {
        "unit": unit,
        "cameras": selectors.cameras_health(unit=unit),
        "offline_minutes": selectors.camera_offline_minutes(unit=unit),
        "units": Unit.objects.order_by("name") if user.unit_id is None else None,
        "can_assign": True,
        "babies": Neonate.objects.filter(unit=unit, active=True).order_by("bed", "mrn"),
    }
    return render(request, "triage/devices.html", context)


@require_POST
@role_required(Role.UNIT_ADMIN)
def device_assign_view(request, pk: int):
    unit = admin_unit(request)
    camera = get_object_or_404(Device, pk=pk, unit=unit, active=True)
    raw = request.POST.get("neonate") or ""
    baby = get_object_or_404(Neonate, pk=raw, unit=unit) if raw.isdigit() else None
    try:
        camera = device_assign(device=camera, neonate=baby, actor=request.user, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request, f"{camera.name} now watches " + (f"bed {baby.bed or '—'} ({baby.mrn})." if baby else "no baby.")
        )
    return back_to("triage:devices", request, unit)
