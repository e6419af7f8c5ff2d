"""Alerts, the neonate list and a neonate's timeline."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from annotations import selectors, services
from annotations.timeline_chart import timeline_chart
from annotations.views.queue import POLL_SECONDS
from triage.services import unit_settings_get
from triage.views.access import CLINICAL, is_poll, role_required


@role_required(*CLINICAL)
def alerts(request):
    rows = list(selectors.alerts_for_unit(user=request.user)[:200])
    fingerprint = selectors.alerts_fingerprint(rows)
    if is_poll(request) and request.GET.get("v") == fingerprint:
        return HttpResponse(status=204)
    context = {
        "alerts": rows,
        "open_count": sum(1 for a in rows if a.acknowledged_at is None),
        "fingerprint": fingerprint,
        "poll_seconds": POLL_SECONDS,
    }
    template = "triage/_alerts.html" if is_poll(request) else "triage/alerts.html"
    return render(request, template, context)


@require_POST
@role_required(*CLINICAL)
def alert_acknowledge(request, pk: int):
    alert = selectors.alert_get(user=request.user, pk=pk)
    try:
        services.alert_acknowledge(alert=alert, actor=request.user, note=request.POST.get("note", ""), request=request)
        messages.success(request, f"Alert for bed {alert.neonate.bed or '—'} ({alert.neonate.mrn}) acknowledged.")
    except services.CaseConflict as exc:
        messages.error(request, exc.message)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("triage:alerts")


@role_required(*CLINICAL)
def neonates(request):
    return render(request, "triage/neonates.html", {"neonates": selectors.neonates_for_unit(user=request.user)})


TIMELINE_WINDOWS = {"6": 6, "24": 24, "72": 72, "168": 168}


@role_required(*CLINICAL)
def neonate_timeline(request, pk: int):
    neonate = selectors.neonate_get(user=request.user, pk=pk)
    hours = TIMELINE_WINDOWS.get(request.GET.get("hours", "24"), 24)
    until = timezone.now()
    since = until - timedelta(hours=hours)
    events = selectors.neonate_timeline(neonate=neonate, since=since, until=until)
    rules = unit_settings_get(unit=neonate.unit)
    threshold = rules.threshold
    chart = timeline_chart(
        since=since, until=until, threshold=threshold, nips_pain_threshold=rules.nips_pain_threshold, **events
    )
    return render(
        request,
        "triage/timeline.html",
        {
            "neonate": neonate,
            "hours": hours,
            "windows": TIMELINE_WINDOWS.values(),
            "chart": chart,
            "threshold": threshold,
            **events,
        },
    )
