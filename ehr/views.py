"""The unit admin's EHR page: is push on, what waits, what failed and why; retry a failed message."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from ehr import services
from ehr.models import OutboxMessage
from triage.models import Role
from triage.views.access import role_required

SHOWN = 200


def _messages_of(user):
    qs = OutboxMessage.objects.select_related("unit")
    return qs if user.is_superuser else qs.filter(unit_id=user.unit_id)


@role_required(Role.UNIT_ADMIN)
def outbox(request):
    qs = _messages_of(request.user)
    counts = dict(qs.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    problems = list(
        qs.exclude(status=OutboxMessage.Status.SENT)
        .exclude(attempts=0, last_error="")
        .order_by("-last_attempt_at")[:SHOWN]
    )
    return render(
        request,
        "ehr/outbox.html",
        {
            "endpoint": settings.NEOPAIN_FHIR_ENDPOINT,
            "push_units": settings.NEOPAIN_FHIR_PUSH_UNITS,
            "enabled_here": bool(request.user.unit and services.push_enabled(request.user.unit.code))
            or (request.user.is_superuser and bool(settings.NEOPAIN_FHIR_ENDPOINT)),
            "counts": {status: counts.get(status, 0) for status in OutboxMessage.Status.values},
            "problems": problems,
            "recent": list(qs.filter(status=OutboxMessage.Status.SENT).order_by("-sent_at")[:20]),
        },
    )


@require_POST
@role_required(Role.UNIT_ADMIN)
def outbox_retry(request, pk: int):
    message = _messages_of(request.user).filter(pk=pk, status=OutboxMessage.Status.FAILED).first()
    if message is None:
        raise Http404("No such failed message.")
    services.outbox_retry(message=message, user=request.user, request=request)
    messages.success(request, f"{message.resource_type}/{message.resource_id} will be sent again.")
    return redirect("ehr:outbox")
