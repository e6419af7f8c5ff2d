"""Server-rendered pages for nurses and unit admins: queue, case, alerts, timeline, settings, audit log.

Every view checks the role on the server and scopes rows to the caller's unit (another unit's
object is a 404). Live parts poll with ``?poll=1`` so the idle-logoff middleware does not count
them as activity, and send the fingerprint of what they show (``v``): an unchanged queue answers
204 and htmx leaves the page alone (no image re-requests, no audit noise).
"""

from __future__ import annotations

import mimetypes
from datetime import timedelta
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from annotations import selectors, services
from annotations.models import NIPS_ITEMS
from triage.models import AuditEvent, Frame, Prediction, Role, TriageCase, Unit
from triage.services import unit_settings_get, unit_settings_update
from triage.templatetags.neopain_ui import age_text, prob

QUEUE_LIMIT = 50
"""Dashboard rows per page, most uncertain first. 200 rows took ~65 ms to render; a page of 50, ~2 ms
(scripts/bench_queue.py). The total waiting is always shown and the next 50 are one link away."""
QUEUE_ROW_VALUES = (
    *selectors.FINGERPRINT_VALUES,
    *("confidence", "created_at", "assessments_required", "neonate__bed", "neonate__mrn"),
    *("claimed_by__username", "claimed_by__first_name", "claimed_by__last_name", "prediction_id"),
    *("prediction__p_pain", "prediction__threshold", "prediction__crop"),
    *("prediction__model_version__name", "prediction__model_version__version"),
)
"""The columns a dashboard row shows, read as values (no model instances, no metrics JSON)."""
PATH_PK = 987654321987
"""A stand-in primary key: a row's links are one reverse() per page, not two per row."""
POLL_SECONDS = 3

NIPS_CHOICES: list[tuple[str, str, list[tuple[int, str]]]] = [
    ("face", "Facial expression", [(0, "Relaxed muscles"), (1, "Grimace")]),
    ("cry", "Cry", [(0, "No cry"), (1, "Whimper"), (2, "Vigorous cry")]),
    ("breathing", "Breathing patterns", [(0, "Relaxed"), (1, "Change in breathing")]),
    ("arms", "Arms", [(0, "Relaxed / restrained"), (1, "Flexed / extended")]),
    ("legs", "Legs", [(0, "Relaxed / restrained"), (1, "Flexed / extended")]),
    ("arousal", "State of arousal", [(0, "Sleeping / awake"), (1, "Fussy")]),
]
assert [name for name, _, _ in NIPS_CHOICES] == list(NIPS_ITEMS)


# --- access -----------------------------------------------------------------------------


def _has_role(user, roles: tuple[str, ...]) -> bool:
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.role in roles and user.unit_id is not None


def role_required(*roles: str):
    """Login required (redirect), then the role (403). Unit scoping happens in the selectors (404)."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not _has_role(request.user, roles):
                raise PermissionDenied("Your role may not open this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


CLINICAL = (Role.NURSE, Role.UNIT_ADMIN)


def _is_poll(request) -> bool:
    return request.GET.get("poll") == "1" or request.headers.get("HX-Trigger-Name") == "poll"


# --- queue ------------------------------------------------------------------------------


def _page_number(request) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def _queue_rows(cases: list[dict], *, user) -> list[dict]:
    """What each dashboard row shows, from :func:`annotations.selectors.queue_values` rows.

    Made here, once, as plain strings: the template only places them (50 rows render in ~2 ms
    instead of ~5 ms of attribute chains and filters), and each link is one ``reverse()`` a page.
    """
    now = timezone.now()
    case_path = reverse("triage:case_detail", args=[PATH_PK])
    crop_path = reverse("triage:prediction_crop", args=[PATH_PK])
    rows = []
    for case in cases:
        held = bool(case["claimed_by_id"] and case["claim_expires_at"] and case["claim_expires_at"] > now)
        created = timezone.localtime(case["created_at"])
        holder = f"{case['claimed_by__first_name']} {case['claimed_by__last_name']}".strip()
        rows.append(
            {
                "url": case_path.replace(str(PATH_PK), str(case["id"])),
                "crop_url": crop_path.replace(str(PATH_PK), str(case["prediction_id"]))
                if case["prediction__crop"]
                else "",
                "bed": case["neonate__bed"] or "—",
                "mrn": case["neonate__mrn"],
                "p_pain": prob(case["prediction__p_pain"]),
                "confidence": prob(case["confidence"]),
                "threshold": prob(case["prediction__threshold"]),
                "model": f"{case['prediction__model_version__name']} v{case['prediction__model_version__version']}",
                "since": created.isoformat(),
                "age": age_text(max(0, int((now - created).total_seconds()))),
                "held_by_me": held and case["claimed_by_id"] == user.pk,
                "held": held,
                "holder": (holder or case["claimed_by__username"]) if held else "",
                "second_scoring": case["assessments_required"] > 1,
                "assessments": f"{case['assessments_done']}/{case['assessments_required']}",
            }
        )
    return rows


@login_required
def dashboard(request):
    """The unit's open cases, most uncertain first, ``QUEUE_LIMIT`` a page. ML engineers and devices have no patient queue.

    The page always says how many cases wait in all and links to the next ones: a case beyond the
    first page is one click away, never silently left out.
    """
    user = request.user
    if not _has_role(user, CLINICAL):
        return render(request, "triage/no_queue.html", {"role": user.get_role_display()})
    queue = selectors.queue_for_nurse(user=user)
    total = selectors.queue_count(user=user)
    pages = max(1, -(-total // QUEUE_LIMIT))
    page = min(_page_number(request), pages)  # the queue shrank under a later page: its last page
    offset = (page - 1) * QUEUE_LIMIT
    polled = request.GET.get("v") if _is_poll(request) else None
    if polled and polled == selectors.queue_fingerprint_of(queue, limit=QUEUE_LIMIT, offset=offset, total=total):
        return HttpResponse(status=204)
    cases = selectors.queue_values(
        selectors.queue_page_ids(queue, offset=offset, limit=QUEUE_LIMIT), values=QUEUE_ROW_VALUES
    )
    fingerprint = selectors.queue_fingerprint(cases, total=total)
    rows = _queue_rows(cases, user=user)
    context = {
        "rows": rows,
        "total": total,
        "page": page,
        "pages": pages,
        "first_shown": offset + 1,
        "last_shown": offset + len(rows),
        "more_after": max(0, total - offset - len(rows)),
        "next_count": min(QUEUE_LIMIT, max(0, total - offset - len(rows))),
        "queue_limit": QUEUE_LIMIT,
        "fingerprint": fingerprint,
        "poll_seconds": POLL_SECONDS,
        "can_claim": user.is_nurse or user.is_superuser,
    }
    if _is_poll(request):
        return render(request, "triage/_queue.html", context)
    context["unit_settings"] = unit_settings_get(unit=user.unit) if user.unit_id else None
    return render(request, "triage/dashboard.html", context)


# --- case -------------------------------------------------------------------------------


def case_context(request, case: TriageCase, *, form_values=None, form_errors=None, box_errors=None) -> dict:
    user = request.user
    now = timezone.now()
    rules = unit_settings_get(unit=case.unit)
    previous, following = selectors.case_neighbours(user=user, case=case)
    held_live = case.claim_is_live(now)
    held_by_me = held_live and case.claimed_by_id == user.pk
    already_scored = any(a.nurse_id == user.pk for a in case.assessments.all())
    decided = case.status == TriageCase.Status.DECIDED
    is_nurse = user.is_nurse
    prediction = case.prediction
    visible = selectors.assessments_visible(user=user, case=case)
    values = form_values or {}
    items = [
        {
            "name": name,
            "label": label,
            "max": NIPS_ITEMS[name],
            "choices": [
                {"value": value, "text": text, "checked": str(values.get(name, "")) == str(value)}
                for value, text in choices
            ],
            "errors": (form_errors or {}).get(name, []),
        }
        for name, label, choices in NIPS_CHOICES
    ]
    return {
        "case": case,
        "prediction": prediction,
        "frame": prediction.frame,
        "neonate": case.neonate,
        "rules": rules,
        "previous_case": previous,
        "next_case": following,
        "held_live": held_live,
        "held_by_me": held_by_me,
        "held_by_other": held_live and not held_by_me,
        "already_scored": already_scored,
        "decided": decided,
        "can_claim": is_nurse and not decided and not already_scored and not (held_live and not held_by_me),
        "form_enabled": is_nurse and held_by_me and not decided and not already_scored,
        "visible_assessments": visible,
        "hidden_assessments": len(case.assessments.all()) - len(visible),
        "items": items,
        "form_values": values,
        "form_errors": form_errors or {},
        "box_errors": box_errors or {},
        "auto_pain_above": prediction.threshold,
        "auto_nonpain_below": round(1 - prediction.threshold, 4),
        "unit_threshold": rules.threshold,
    }


@role_required(*CLINICAL)
def case_detail(request, pk: int):
    case = selectors.case_get(user=request.user, pk=pk)
    return render(request, "triage/case_detail.html", case_context(request, case))


@require_POST
@role_required(Role.NURSE)
def case_claim(request, pk: int):
    case = selectors.case_get(user=request.user, pk=pk)
    try:
        services.case_claim(case=case, nurse=request.user, request=request)
    except services.CaseConflict as exc:
        messages.error(request, f"Not claimed: {exc.message}")
    # No #fragment: a fragment target makes browsers skip autofocus on the first NIPS item.
    return redirect("triage:case_detail", pk=case.pk)


@require_POST
@role_required(*CLINICAL)
def case_release(request, pk: int):
    case = selectors.case_get(user=request.user, pk=pk)
    try:
        services.case_release(case=case, nurse=request.user, request=request)
        messages.info(request, f"Case {case.pk} is back in the queue.")
    except services.CaseConflict as exc:
        messages.error(request, exc.message)
        return redirect("triage:case_detail", pk=case.pk)
    return redirect("triage:dashboard")


# --- alerts -----------------------------------------------------------------------------


@role_required(*CLINICAL)
def alerts(request):
    rows = list(selectors.alerts_for_unit(user=request.user)[:200])
    fingerprint = selectors.alerts_fingerprint(rows)
    if _is_poll(request) and request.GET.get("v") == fingerprint:
        return HttpResponse(status=204)
    context = {
        "alerts": rows,
        "open_count": sum(1 for a in rows if a.acknowledged_at is None),
        "fingerprint": fingerprint,
        "poll_seconds": POLL_SECONDS,
    }
    template = "triage/_alerts.html" if _is_poll(request) else "triage/alerts.html"
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


# --- neonates and timeline --------------------------------------------------------------


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
        "nips_marks": [{"x": x_at(a.created_at), "a": a} for a in assessments],
    }


# --- unit admin: settings ---------------------------------------------------------------


class UnitSettingsForm(forms.Form):
    threshold = forms.FloatField(
        min_value=0.5,
        max_value=1.0,
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        label="Automatic-verdict threshold",
        help_text="Confidence at or above this is decided by the model; below it goes to a nurse. 0.50–1.00.",
    )
    nips_pain_threshold = forms.IntegerField(
        min_value=1, max_value=7, label="NIPS pain rule: total at or above", help_text="The paper's rule is total ≥ 3."
    )
    alert_cooldown_minutes = forms.IntegerField(
        min_value=0,
        max_value=24 * 60,
        label="Alert cooldown (minutes)",
        help_text="Repeats for the same baby within this time are counted on the open alert, not paged again.",
    )
    claim_timeout_minutes = forms.IntegerField(
        min_value=1,
        max_value=240,
        label="Claim timeout (minutes)",
        help_text="A claimed case returns to the queue after this.",
    )
    double_scoring_share = forms.FloatField(
        min_value=0,
        max_value=1,
        widget=forms.NumberInput(attrs={"step": "0.05"}),
        label="Double-scoring share",
        help_text="Share of nurse cases scored blind by two nurses (0 = none, 0.10 = one in ten).",
    )
    missed_pain_target = forms.FloatField(
        required=False,
        min_value=0.001,
        max_value=0.5,
        widget=forms.NumberInput(attrs={"step": "0.005"}),
        label="Missed-pain target (optional)",
        help_text="Ceiling on missed pain among automatic verdicts, for the guaranteed threshold.",
    )


def _admin_unit(request) -> Unit:
    user = request.user
    if user.unit_id:
        return user.unit
    code = request.GET.get("unit") or request.POST.get("unit")
    unit = Unit.objects.filter(code=code).first() if code else Unit.objects.order_by("name").first()
    if unit is None:
        raise Http404("No unit.")
    return unit


@require_http_methods(["GET", "POST"])
@role_required(Role.UNIT_ADMIN)
def unit_settings(request):
    unit = _admin_unit(request)
    rules = unit_settings_get(unit=unit)
    fields = list(UnitSettingsForm.base_fields)
    if request.method == "POST":
        form = UnitSettingsForm(request.POST)
        if form.is_valid():
            try:
                unit_settings_update(unit=unit, actor=request.user, changes=form.cleaned_data, request=request)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, "Settings saved. The change is in the audit log.")
                return redirect(
                    reverse("triage:unit_settings") + (f"?unit={unit.code}" if not request.user.unit_id else "")
                )
    else:
        form = UnitSettingsForm(initial={name: getattr(rules, name) for name in fields})
    from triage.selectors import active_model_for_unit

    model = active_model_for_unit(unit=unit)
    metrics = (model.metrics or {}) if model else {}
    workload = selectors.threshold_workload_estimate(unit=unit)
    recent_changes = AuditEvent.objects.filter(unit=unit, action="unit_settings.updated").order_by(
        "-created_at", "-id"
    )[:10]
    context = {
        "unit": unit,
        "form": form,
        "rules": rules,
        "model": model,
        "metrics": metrics,
        "metric_rows": metric_rows(metrics),
        "kappa": {k: v for k, v in (metrics.get("kappa") or {}).items() if isinstance(v, (int, float, str))}
        if isinstance(metrics.get("kappa"), dict)
        else {},
        "threshold_rows": threshold_rows(metrics, rules.threshold),
        "curve": workload_curve(metrics, rules.threshold),
        "guarantee": guarantee_context(metrics, rules.threshold),
        "workload": workload,
        "recent_changes": recent_changes,
        "units": Unit.objects.all() if request.user.is_superuser and not request.user.unit_id else [],
    }
    return render(request, "triage/unit_settings.html", context, status=400 if request.method == "POST" else 200)


SUMMARY_METRICS = [
    ("accuracy_mean", "Accuracy (mean over folds)", "pct"),
    ("accuracy_sd", "Accuracy spread (SD)", "pct"),
    ("auc", "AUC", "prob"),
    ("sensitivity", "Sensitivity (pain caught)", "pct"),
    ("specificity", "Specificity (no-pain recognised)", "pct"),
    ("aurc", "Area under risk–coverage (lower is better)", "prob"),
    ("ece", "Calibration error (ECE)", "prob"),
    ("ece_temperature_scaled", "Calibration error after temperature scaling", "prob"),
    ("temperature", "Temperature", "prob"),
]


def metric_rows(metrics: dict) -> list[dict]:
    rows = []
    for key, label, kind in SUMMARY_METRICS:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = f"{value * 100:.1f}%" if kind == "pct" else f"{value:.3f}"
        else:
            text = None
        rows.append({"key": key, "label": label, "value": text})
    return rows


def _nearest(values: list[float], target: float) -> float | None:
    return min(values, key=lambda v: abs(v - target)) if values else None


def threshold_rows(metrics: dict, current: float) -> list[dict]:
    rows = [
        r
        for r in metrics.get("thresholds") or []
        if isinstance(r, dict) and isinstance(r.get("threshold"), (int, float))
    ]
    nearest = _nearest([float(r["threshold"]) for r in rows], current)
    return [
        {**r, "manual_share": _manual_share(r), "is_current": float(r["threshold"]) == nearest}
        for r in sorted(rows, key=lambda r: r["threshold"])
    ]


def _manual_share(row: dict) -> float | None:
    """Share of cases sent to a nurse. ``manual`` is a count (as in the paper's "10 of 187")."""
    share = row.get("manual_share")
    if isinstance(share, (int, float)):
        return float(share)
    manual, n = row.get("manual"), row.get("n")
    if isinstance(manual, (int, float)) and isinstance(n, (int, float)) and n:
        return float(manual) / float(n)
    return None


def workload_curve(metrics: dict, current: float, width: int = 560, height: int = 300) -> dict | None:
    """Accuracy of automatic verdicts (y) against the share sent to nurses (x), one point per threshold."""
    rows = [
        r
        for r in threshold_rows(metrics, current)
        if isinstance(r.get("accuracy"), (int, float)) and isinstance(r.get("manual_share"), (int, float))
    ]
    if len(rows) < 2:
        return None
    left, right, top, bottom = 64, 24, 20, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = 1.0
    y_min = min(float(r["accuracy"]) for r in rows)
    y_min = max(0.0, min(0.9, (int(y_min * 20) / 20.0) - 0.05))  # round down to 0.05, leave headroom

    def x_at(v: float) -> float:
        return round(left + plot_w * float(v) / x_max, 1)

    def y_at(v: float) -> float:
        return round(top + plot_h * (1 - (float(v) - y_min) / (1 - y_min)), 1)

    points = [
        {
            "x": x_at(r["manual_share"]),
            "y": y_at(r["accuracy"]),
            "threshold": r["threshold"],
            "accuracy": r["accuracy"],
            "manual": r["manual_share"],
            "is_current": r["is_current"],
        }
        for r in sorted(rows, key=lambda r: r["manual_share"])
    ]
    y_ticks = []
    step = 0.05 if 1 - y_min <= 0.3 else 0.1
    v = y_min
    while v <= 1.0001:
        y_ticks.append({"y": y_at(v), "label": f"{v * 100:.0f}%"})
        v += step
    x_ticks = [
        {"x": x_at(x_max * i / 4), "label": f"{x_max * i / 4 * 100:.0f}%" if x_max == 1.0 else f"{x_max * i / 4:.0f}"}
        for i in range(5)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "right": width - right,
        "bottom": top + plot_h,
        "points": points,
        "polyline": " ".join(f"{p['x']},{p['y']}" for p in points),
        "y_ticks": y_ticks,
        "x_ticks": x_ticks,
        "x_is_share": x_max == 1.0,
        "mid_x": left + plot_w / 2,
        "mid_y": top + plot_h / 2,
    }


def guarantee_context(metrics: dict, current: float) -> dict | None:
    guarantee = metrics.get("guarantee")
    if not isinstance(guarantee, dict) or not guarantee:
        return None
    threshold = guarantee.get("threshold")
    return {
        **guarantee,
        "covers_current": isinstance(threshold, (int, float)) and current >= float(threshold),
        "confidence_level": (1 - float(guarantee["delta"]))
        if isinstance(guarantee.get("delta"), (int, float))
        else None,
    }


# --- unit admin: audit log --------------------------------------------------------------


@role_required(Role.UNIT_ADMIN)
def audit_log(request):
    user = request.user
    events = AuditEvent.objects.all()
    if not user.is_superuser:
        events = events.filter(unit_id=user.unit_id)
    elif request.GET.get("unit"):
        events = events.filter(unit__code=request.GET["unit"])
    actions = sorted(set(events.order_by().values_list("action", flat=True).distinct()))
    filters = {
        k: (request.GET.get(k) or "").strip() for k in ("action", "actor", "object", "date_from", "date_to", "unit")
    }
    if filters["action"]:
        events = events.filter(action=filters["action"])
    if filters["actor"]:
        events = events.filter(actor_username__icontains=filters["actor"])
    if filters["object"]:
        kind, _, ident = filters["object"].partition(":")
        events = (
            events.filter(object_id=ident.strip(), object_type__icontains=kind.strip())
            if ident
            else events.filter(object_type__icontains=kind)
        )
    for key, lookup in (("date_from", "created_at__date__gte"), ("date_to", "created_at__date__lte")):
        if filters[key]:
            try:
                events = events.filter(**{lookup: forms.DateField().clean(filters[key])})
            except ValidationError:
                messages.error(request, f"{key.replace('_', ' ').capitalize()}: use YYYY-MM-DD.")
    page = Paginator(events.order_by("-created_at", "-id"), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "triage/audit_log.html",
        {
            "page": page,
            "actions": actions,
            "filters": filters,
            "query": query.urlencode(),
            "units": Unit.objects.all() if user.is_superuser else [],
        },
    )


# --- private images ---------------------------------------------------------------------

IMAGE_ROLES = (Role.NURSE, Role.UNIT_ADMIN, Role.ML_ENGINEER)


def _image_owner_check(request, unit_id: int) -> None:
    user = request.user
    if user.is_superuser:
        return
    if user.role not in IMAGE_ROLES:
        raise PermissionDenied("Your role may not view patient images.")
    if user.unit_id != unit_id:
        raise Http404("No such image.")


def _serve_private_file(file_field, filename: str) -> FileResponse:
    if not file_field:
        raise Http404("No image stored.")
    try:
        handle = file_field.open("rb")
    except (FileNotFoundError, OSError) as exc:
        raise Http404("Image file missing.") from exc
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@login_required
def frame_image(request, pk: int):
    frame = Frame.objects.filter(pk=pk).select_related("unit").first()
    if frame is None:
        raise Http404("No such image.")
    _image_owner_check(request, frame.unit_id)
    response = _serve_private_file(frame.image, f"frame-{frame.pk}{frame.storage_suffix()}")
    services.image_view_record(user=request.user, kind="frame", obj=frame, unit=frame.unit, request=request)
    return response


def _stored_suffix(file_field) -> str:
    """``.jpg`` for crops stored since JPEG display copies, ``.png`` for older ones (sets the content type)."""
    return ".jpg" if str(file_field.name or "").lower().endswith(".jpg") else ".png"


def _prediction_for_image(request, pk: int) -> Prediction:
    prediction = Prediction.objects.filter(pk=pk).select_related("frame__unit").first()
    if prediction is None:
        raise Http404("No such image.")
    _image_owner_check(request, prediction.frame.unit_id)
    return prediction


@login_required
def prediction_crop(request, pk: int):
    prediction = _prediction_for_image(request, pk)
    response = _serve_private_file(prediction.crop, f"crop-{prediction.pk}{_stored_suffix(prediction.crop)}")
    services.image_view_record(
        user=request.user, kind="crop", obj=prediction, unit=prediction.frame.unit, request=request
    )
    return response


@login_required
def prediction_saliency(request, pk: int):
    prediction = _prediction_for_image(request, pk)
    response = _serve_private_file(
        prediction.saliency, f"saliency-{prediction.pk}{_stored_suffix(prediction.saliency)}"
    )
    services.image_view_record(
        user=request.user, kind="saliency", obj=prediction, unit=prediction.frame.unit, request=request
    )
    return response
