"""The unit admin's bedside cameras page: last contact, agent version, spool backlog, offline state."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render

from triage import selectors
from triage.models import Role, Unit
from triage.views.access import role_required


@role_required(Role.UNIT_ADMIN)
def devices(request):
    user = request.user
    unit = user.unit
    if unit is None:  # a superuser without a unit picks one
        code = request.GET.get("unit")
        unit = Unit.objects.filter(code=code).first() if code else Unit.objects.order_by("name").first()
    if unit is None:
        raise Http404("No unit.")
    context = {
        "unit": unit,
        "cameras": selectors.cameras_health(unit=unit),
        "offline_minutes": selectors.camera_offline_minutes(unit=unit),
        "units": Unit.objects.order_by("name") if user.unit_id is None else None,
    }
    return render(request, "triage/devices.html", context)
