"""The unit admin's bedside cameras page: last contact, agent version, spool backlog, offline state;
assign a camera to a baby; and each camera's API tokens (created, last used, expires), which the
admin creates, rotates and revokes.

A new key is shown once, in the answer to the POST that made it (``Cache-Control: no-store``); the
database keeps only its hash. Every change is audited by ``triage.services.tokens``.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from triage import selectors, services
from triage.models import ApiToken, Device, Neonate, Role, Unit
from triage.services.devices import device_assign
from triage.views.access import role_required
from triage.views.unit_admin import admin_unit, back_to


def _page(request, unit: Unit, *, issued: services.IssuedToken | None = None):
    user = request.user
    context = {
        "unit": unit,
        "cameras": selectors.cameras_health(unit=unit),
        "camera_tokens": selectors.camera_tokens(unit=unit),
        "issued": issued,
        "offline_minutes": selectors.camera_offline_minutes(unit=unit),
        "units": Unit.objects.order_by("name") if user.unit_id is None else None,
        "can_assign": True,
        "babies": Neonate.objects.filter(unit=unit, active=True).order_by("bed", "mrn"),
    }
    response = render(request, "triage/devices.html", context)
    if issued is not None:
        response["Cache-Control"] = "no-store"  # the key must not stay in a cache
    return response


@role_required(Role.UNIT_ADMIN)
def devices(request):
    return _page(request, admin_unit(request))


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


def _camera(request, pk: int) -> Device:
    """The camera, if the caller's unit owns it (superusers: any); another unit's camera is a 404."""
    scope = {} if request.user.is_superuser else {"unit_id": request.user.unit_id}
    return get_object_or_404(Device.objects.select_related("user", "unit"), pk=pk, **scope)


@require_POST
@role_required(Role.UNIT_ADMIN)
def camera_token_create(request, pk: int):
    camera = _camera(request, pk)
    issued = services.api_token_create(user=camera.user, actor=request.user, request=request)
    return _page(request, camera.unit, issued=issued)


@require_POST
@role_required(Role.UNIT_ADMIN)
def camera_token_rotate(request, pk: int):
    camera = _camera(request, pk)
    issued = services.api_token_rotate(user=camera.user, actor=request.user, request=request)
    return _page(request, camera.unit, issued=issued)


@require_POST
@role_required(Role.UNIT_ADMIN)
def api_token_revoke(request, pk: int):
    scope = {} if request.user.is_superuser else {"user__device__unit_id": request.user.unit_id}
    token = get_object_or_404(
        ApiToken.objects.select_related("user__device__unit"), pk=pk, user__device__isnull=False, **scope
    )
    services.api_token_revoke(token=token, actor=request.user, request=request)
    messages.success(request, f"Token {token.prefix}… of {token.user.device.name} revoked. It no longer works.")
    return back_to("triage:devices", request, token.user.device.unit)
