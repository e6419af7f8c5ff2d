"""The ML engineer's models page: registered models, their evaluations, compare two, activate one.

ML engineers and superusers only (checked here, on the server: an ML engineer usually has no unit,
so the unit-bound ``role_required`` does not fit). Activation goes through the registry service
(hash checked, audited, the previous model retired); the held-out comparison runs as a Celery task.
"""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotations import model_live
from triage.models import AuditEvent, ModelVersion, Role
from triage.services import audit_record, model_version_activate


def ml_engineer_required(view):
    @wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        user = request.user
        if not (user.is_active and (user.is_superuser or user.role == Role.ML_ENGINEER)):
            raise PermissionDenied("The models page is for ML engineers.")
        return view(request, *args, **kwargs)

    return wrapped


def _pick(models: list[ModelVersion], raw: str | None) -> ModelVersion | None:
    return next((m for m in models if raw and raw.isdigit() and m.pk == int(raw)), None)


@ml_engineer_required
def models_page(request):
    models = list(ModelVersion.objects.select_related("unit", "activated_by", "created_by").order_by("-created_at"))
    live = model_live.live_by_model(m.pk for m in models if m.kind == ModelVersion.Kind.CLASSIFIER)
    requested: dict[str, str] = {}
    for object_id, at in (
        AuditEvent.objects.filter(action="model.comparison_requested", object_type="triage.ModelVersion")
        .order_by("created_at")
        .values_list("object_id", "created_at")
    ):
        requested[object_id] = at.isoformat(timespec="seconds")
    rows = []
    for m in models:
        comparison = (m.metrics or {}).get("comparison")
        asked = requested.get(str(m.pk))
        done_at = (comparison or {}).get("compared_at") or ""
        rows.append(
            {
                "model": m,
                "stored": model_live.stored_figures(m),
                "live": live.get(m.pk),
                "comparison": comparison,
                # ISO timestamps in UTC sort as text.
                "comparison_pending": bool(asked and asked[:19] > done_at[:19]),
            }
        )
    classifiers = [m for m in models if m.kind == ModelVersion.Kind.CLASSIFIER]
    a, b = _pick(classifiers, request.GET.get("a")), _pick(classifiers, request.GET.get("b"))
    comparison = None
    if a is not None and b is not None and a.pk != b.pk:
        comparison = {
            "live": model_live.models_compare_live(a=a, b=b),
            "stored": [
                (
                    label,
                    kind,
                    model_live.stored_figures(a)["figures"][key],
                    model_live.stored_figures(b)["figures"][key],
                )
                for key, label, kind in model_live.STORED_FIGURES
            ],
            "a_stored": model_live.stored_figures(a),
            "b_stored": model_live.stored_figures(b),
        }
    context = {
        "rows": rows,
        "classifiers": classifiers,
        "a": a,
        "b": b,
        "comparison": comparison,
        "recent": AuditEvent.objects.filter(action__startswith="model.").order_by("-created_at", "-id")[:15],
    }
    return render(request, "annotations/models.html", context)


@require_POST
@ml_engineer_required
def model_activate(request, pk: int):
    model = get_object_or_404(ModelVersion, pk=pk)
    try:
        model = model_version_activate(model_version=model, actor=request.user, request=request)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, f"{model.label} not activated: " + " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        scope = model.unit.name if model.unit else "every unit without a model of its own"
        messages.success(
            request, f"{model.label} is now the active {model.kind} for {scope}; workers switch on their next batch."
        )
    return redirect(reverse("annotations:models"))


@require_POST
@ml_engineer_required
def model_compare_request(request, pk: int):
    """Queue the held-out comparison of this candidate with its unit's active model (a Celery task)."""
    from annotations.tasks import model_compare

    model = get_object_or_404(ModelVersion, pk=pk, kind=ModelVersion.Kind.CLASSIFIER)
    with transaction.atomic():
        audit_record(
            action="model.comparison_requested", actor=request.user, unit=model.unit, obj=model, request=request
        )
        model_compare.delay_on_commit(model.pk, request.user.pk)
    messages.success(
        request,
        f"Comparison of {model.label} with the active model queued: both score every held-out nurse label (minutes). "
        "The result appears on this page when the worker is done.",
    )
    return redirect(reverse("annotations:models"))
