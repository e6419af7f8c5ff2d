"""The unit admin's settings page: the triage policy, with the active model's metrics and workload."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotations import selectors
from triage.models import AuditEvent, Role, Unit
from triage.services import unit_settings_get, unit_settings_update
from triage.views.access import role_required


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
    alert_escalation_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=240,
        label="Escalate an unacknowledged alert after (minutes)",
        help_text="Nobody acknowledged it in this time: it goes to the charge nurse (unit admins when none is named).",
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
        help_text=(
            "alpha: the guaranteed threshold keeps expected missed pain at or under this share of ALL frames "
            "(the rate among automatic verdicts is higher; both are shown below). Changing it recomputes the "
            "threshold from the model's stored calibration scores."
        ),
    )
    device_offline_minutes = forms.IntegerField(
        min_value=1,
        max_value=24 * 60,
        label="Camera offline after (minutes)",
        help_text="A bedside camera silent this long is shown offline; one watching a baby is a warning on the queue.",
    )
    stale_after_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=24 * 60,
        label="Frame stale after (minutes)",
        help_text=(
            "A frame captured longer ago than this is stale: the queue lists it after fresh frames (grouped per baby) "
            "and the case warns that the baby may look different now."
        ),
    )
    bedside_window_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=120,
        label="Bedside observation covers (minutes)",
        help_text="One NIPS observation at the cot also resolves the baby's open cases from frames this recent.",
    )
    alert_rule_k = forms.IntegerField(
        min_value=1,
        max_value=20,
        label="Automatic alert: pain verdicts (k)",
        help_text="An automatic pain alert needs at least k pain verdicts among the baby's last n automatic ones.",
    )
    alert_rule_n = forms.IntegerField(
        min_value=1,
        max_value=20,
        label="… among the last (n)",
        help_text="1 of 1: every automatic pain verdict alerts.",
    )
    alert_rule_window_seconds = forms.IntegerField(
        min_value=10,
        max_value=3600,
        label="… within (seconds)",
        help_text="Only verdicts on keyframes captured this recently count. Nurse-confirmed pain always alerts at once.",
    )
    audit_share = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        label="Audit share",
        help_text=(
            "Random share of automatic verdicts also sent to a nurse as blind audit cases (she does not see the "
            "model's verdict). Their labels are unbiased: the ones used for calibration and live accuracy."
        ),
    )
    keyframe_period_s = forms.FloatField(
        required=False,
        min_value=0,
        max_value=600,
        widget=forms.NumberInput(attrs={"step": "1"}),
        label="Clip keyframe period (seconds)",
        help_text="A clip gives at least one frame this often, besides the frames where the face changes (0 = changes only).",
    )
    device_token_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=3 * 365,
        label="Camera token lifetime (days)",
        help_text="New bedside camera tokens expire after this (existing tokens keep their date).",
    )
    person_token_hours = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=30 * 24,
        label="Staff API token lifetime (hours)",
        help_text="New API tokens of people expire after this (a shift by default).",
    )


OPTIONAL_UNCHANGED = (
    "audit_share",
    "keyframe_period_s",
    "stale_after_minutes",
    "device_token_days",
    "person_token_hours",
    "bedside_window_minutes",
    "alert_escalation_minutes",
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
                # Left empty: unchanged (they have no "none" value, unlike the missed-pain target).
                changes = {k: v for k, v in form.cleaned_data.items() if not (v is None and k in OPTIONAL_UNCHANGED)}
                unit_settings_update(unit=unit, actor=request.user, changes=changes, request=request)
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
    workload = selectors.threshold_workload_estimate(unit=unit, model_version=model, audit_share=rules.audit_share)
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
        "sample_accuracy": sample_accuracy(metrics),
        "kappa": {k: v for k, v in (metrics.get("kappa") or {}).items() if isinstance(v, (int, float, str))}
        if isinstance(metrics.get("kappa"), dict)
        else {},
        "threshold_rows": threshold_rows(metrics, rules.threshold),
        "curve": workload_curve(metrics, rules.threshold),
        "guarantee": guarantee_context(metrics, rules.threshold, alpha=rules.missed_pain_target),
        "live": live_with_intervals(selectors.live_accuracy(unit=unit, model_version=model)) if model else None,
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
        babies = metrics.get("per_subject_accuracy")
        if text and key == "accuracy_mean" and isinstance(babies, dict) and babies:
            # A mean over few babies is a small sample whatever the frame count: say how few.
            text += f" over {len(babies)} bab{'y' if len(babies) == 1 else 'ies'}"
        rows.append({"key": key, "label": label, "value": text})
    return rows


def _interval(right: float | int | None, n) -> dict | None:
    """``{"n", "low", "high"}``: the Wilson 95% interval of ``right`` of ``n`` (None without a sample)."""
    from inference.thresholds import wilson_interval

    if not isinstance(n, (int, float)) or isinstance(n, bool) or n < 1 or not isinstance(right, (int, float)):
        return None
    n = int(n)
    bounds = wilson_interval(max(0, min(n, round(right))), n)
    return {"n": n, "low": bounds[0], "high": bounds[1]}


def sample_accuracy(metrics: dict) -> list[dict]:
    """Accuracy, sensitivity and specificity on the held-out frames, each with its n and Wilson 95% interval."""
    n, n_pain = metrics.get("n"), metrics.get("n_pain")
    if not isinstance(n, int) or not isinstance(n_pain, int):
        return []
    rows = []
    for key, label, size in (
        ("accuracy", "Accuracy", n),
        ("sensitivity", "Sensitivity (pain caught)", n_pain),
        ("specificity", "Specificity (no-pain recognised)", n - n_pain),
    ):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and size:
            rows.append({"label": label, "value": value, "ci": _interval(value * size, size)})
    return rows


def live_with_intervals(live: dict) -> dict:
    """Live accuracy (``{"audit": {"n", "accuracy"}, ...}``) with a Wilson 95% interval on each."""
    return {
        kind: {**figures, "ci": _interval((figures["accuracy"] or 0) * figures["n"], figures["n"])}
        for kind, figures in live.items()
    }


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
        {
            **r,
            "manual_share": _manual_share(r),
            "is_current": float(r["threshold"]) == nearest,
            "auto_ci": _auto_interval(r),
        }
        for r in sorted(rows, key=lambda r: r["threshold"])
    ]


def _auto_interval(row: dict) -> dict | None:
    """The interval of the model's accuracy on its automatic verdicts (n = frames minus nurse cases)."""
    n, manual, accuracy = row.get("n"), row.get("manual"), row.get("auto_accuracy")
    if not all(isinstance(v, (int, float)) for v in (n, manual, accuracy)):
        return None
    n_auto = int(n) - int(manual)
    return _interval(accuracy * n_auto, n_auto)


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


def guarantee_context(metrics: dict, current: float, *, alpha: float | None = None) -> dict | None:
    """The model's guarantee for the page; recomputed at once for the unit's alpha from the stored scores.

    ``conditional`` is the Learn-then-Test threshold for missed pain among automatic verdicts.
    """
    from inference import thresholds as th

    guarantee = metrics.get("guarantee")
    conditional = metrics.get("guarantee_conditional")
    recomputed = False
    if alpha and isinstance(guarantee, dict) and guarantee.get("alpha") != alpha:
        fresh = th.guarantees_from_metrics(metrics, alpha=float(alpha))
        if fresh is not None:
            guarantee, conditional, recomputed = fresh["guarantee"], fresh["guarantee_conditional"], True
    if not isinstance(guarantee, dict) or not guarantee:
        return None
    threshold = guarantee.get("threshold")
    return {
        **guarantee,
        # A guaranteed threshold of 1.00 (or none) lets nothing through: no automatic verdict is safe yet.
        "nothing_safe": bool(guarantee.get("all_to_nurse"))
        or not isinstance(threshold, (int, float))
        or float(threshold) >= 1.0,
        "recomputed": recomputed,
        "conditional": conditional if isinstance(conditional, dict) else None,
        "covers_current": isinstance(threshold, (int, float)) and current >= float(threshold),
        "confidence_level": (1 - float(guarantee["delta"]))
        if isinstance(guarantee.get("delta"), (int, float))
        else None,
    }
