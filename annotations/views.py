"""HTML form handlers for nurse decisions: NIPS assessment, face-box correction, the export page."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotations import selectors, services
from annotations.models import NIPS_ITEMS
from triage.models import Role, Unit
from triage.views import CLINICAL, case_context, role_required


@require_POST
@role_required(Role.NURSE)
def assessment_submit(request, case_id: int):
    case = selectors.case_get(user=request.user, pk=case_id)
    post = request.POST
    values = {name: post.get(name, "") for name in NIPS_ITEMS}
    values.update(
        note=post.get("note", ""),
        intubated=post.get("intubated") == "on",
        unable_to_assess=post.get("unable_to_assess") == "on",
        unable_reason=post.get("unable_reason", ""),
    )
    try:
        assessment = services.assessment_create(
            case=case,
            nurse=request.user,
            items={name: values[name] for name in NIPS_ITEMS},
            note=values["note"],
            intubated=values["intubated"],
            unable_to_assess=values["unable_to_assess"],
            unable_reason=values["unable_reason"],
            request=request,
        )
    except ValidationError as exc:
        context = case_context(request, case, form_values=values, form_errors=exc.message_dict)
        return render(request, "triage/case_detail.html", context, status=400)
    except services.CaseConflict as exc:
        messages.error(request, f"Not saved: {exc.message}")
        return redirect("triage:case_detail", pk=case.pk)
    if assessment.unable_to_assess:
        verdict = "unable to assess"
    else:
        verdict = f"NIPS {assessment.total} — {'PAIN' if assessment.pain else 'no pain'} by rule {assessment.rule}"
    tail = ""
    if assessment.pain:
        tail = " The pain team has been alerted."
    elif assessment.case.status != "decided":
        tail = " A second nurse will score it blind."
    messages.success(request, f"Case {case.pk} saved: {verdict}.{tail}")
    return redirect("triage:dashboard")


@require_POST
@role_required(*CLINICAL)
def face_box_submit(request, case_id: int):
    case = selectors.case_get(user=request.user, pk=case_id)
    post = request.POST
    try:
        services.face_box_correction_create(
            frame=case.prediction.frame,
            nurse=request.user,
            x=post.get("x"),
            y=post.get("y"),
            w=post.get("w"),
            h=post.get("h"),
            no_face=post.get("no_face") == "on",
            request=request,
        )
    except ValidationError as exc:
        context = case_context(request, case, box_errors=exc.message_dict)
        return render(request, "triage/case_detail.html", context, status=400)
    messages.success(request, "Face box correction saved. It will be used to retrain the face detector.")
    return redirect(reverse("triage:case_detail", args=[case.pk]))


@role_required(*CLINICAL)
def export_page(request):
    """A form whose GET goes straight to the streamed CSV API (session auth), so there is one implementation."""
    user = request.user
    return render(
        request,
        "annotations/export.html",
        {
            "units": Unit.objects.all() if user.is_superuser else [],
            "neonates": selectors.neonates_for_unit(user=user),
            "action": reverse("api-assessment-export"),
        },
    )
