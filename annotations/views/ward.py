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
from annotations.views.queue import POLL_SECONDS
from triage.models import Prediction
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
    threshold = unit_settings_get(unit=neonate.unit).threshold
    chart = timeline_chart(since=since, until=until, threshold=threshold, **events)
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


def timeline_chart(
    *, predictions, assessments, alerts, since, until, threshold: float, width: int = 960, height: int = 380
) -> dict:
    """Geometry for the server-rendered SVG: p_pain over time, the automatic bands, event lanes."""
    left, right, top, bottom = 64, 20, 76, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max(1.0, (until - since).total_seconds())

    def x_at(moment) -> float:
        return round(left + plot_w * min(1.0, max(0.0, (moment - since).total_seconds() / span)), 1)

    def y_at(p: float) -> float:
        return round(top + plot_h * (1 - p), 1)

    points = [
        {
            "x": x_at(p.frame.captured_at),
            "y": y_at(p.p_pain),
            "p": p.p_pain,
            "auto": p.routed_to == Prediction.Route.AUTO,
            "at": p.frame.captured_at,
            "model": p.model_version.label,
        }
        for p in predictions
    ]
    ticks = []
    for i in range(7):
        moment = since + (until - since) * i / 6
        ticks.append(
            {
                "x": x_at(moment),
                "label": timezone.localtime(moment).strftime("%H:%M" if span <= 86400 else "%d %b %H:%M"),
            }
        )
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": top + plot_h,
        "plot_w": plot_w,
        "plot_h": plot_h,
        "points": points,
        "polyline": " ".join(f"{pt['x']},{pt['y']}" for pt in points),
        "y_pain": y_at(threshold),
        "y_nonpain": y_at(1 - threshold),
        "band_h": round(y_at(1 - threshold) - y_at(threshold), 1),
        "threshold": threshold,
        "nonpain_limit": round(1 - threshold, 2),
        "y_ticks": [{"y": y_at(v), "label": f"{v:.2f}"} for v in (0, 0.25, 0.5, 0.75, 1.0)],
        "x_ticks": ticks,
        "alert_lane_y": 22,
        "nips_lane_y": 50,
        "alert_marks": [{"x": x_at(a.created_at), "a": a} for a in alerts],
        # Each alert's span: from its first pain verdict to the last one counted on it (repeats).
        "alert_spans": [
            {"x": x_at(a.created_at), "w": max(2.0, round(x_at(a.last_event_at) - x_at(a.created_at), 1)), "a": a}
            for a in alerts
        ],
        "nips_marks": [{"x": x_at(a.created_at), "a": a} for a in assessments],
    }
