"""The case page and the nurse's decisions on it: claim, release, NIPS assessment, face-box correction."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from annotations import bedside, disagreements, queue_time, selectors, services
from annotations.assessment_input import NOT_OBSERVED, OBSERVED_AT_SKEW
from annotations.models import NIPS_ITEMS
from annotations.observations import BEDSIDE_ITEMS, METHOD_LABELS, Kind, Method
from triage.models import Role, TriageCase
from triage.routing_reason import routing_reason
from triage.services import unit_settings_get
from triage.views.access import CLINICAL, role_required

NIPS_CHOICES: list[tuple[str, str, list[tuple[int, str]]]] = [
    ("face", "Facial expression", [(0, "Relaxed muscles"), (1, "Grimace")]),
    ("cry", "Cry", [(0, "No cry"), (1, "Whimper"), (2, "Vigorous cry")]),
    ("breathing", "Breathing patterns", [(0, "Relaxed"), (1, "Change in breathing")]),
    ("arms", "Arms", [(0, "Relaxed / restrained"), (1, "Flexed / extended")]),
    ("legs", "Legs", [(0, "Relaxed / restrained"), (1, "Flexed / extended")]),
    ("arousal", "State of arousal", [(0, "Sleeping / awake"), (1, "Fussy")]),
]
assert [name for name, _, _ in NIPS_CHOICES] == list(NIPS_ITEMS)

METHOD_CHOICES = [(m.value, METHOD_LABELS[m].capitalize()) for m in (Method.COT, Method.VIDEO, Method.IMAGE)]


def _items_context(values: dict, errors: dict) -> list[dict]:
    """The six items for the form, each with its choices and a "not observed" choice."""
    return [
        {
            "name": name,
            "label": label,
            "max": NIPS_ITEMS[name],
            "bedside": name in BEDSIDE_ITEMS,
            "choices": [
                {"value": value, "text": text, "checked": str(values.get(name, "")) == str(value)}
                for value, text in choices
            ],
            "not_observed": values.get(name) in NOT_OBSERVED,
            "errors": errors.get(name, []),
        }
        for name, label, choices in NIPS_CHOICES
    ]


def observed_at_from_form(value: str, *, now):
    """``HH:MM`` (the unit's local time) as the latest such moment not after now (a time before midnight is yesterday)."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        clock = datetime.strptime(value, "%H:%M").time()
    except ValueError:
        raise ValidationError({"observed_at": ["Give the time as HH:MM."]}) from None
    local_now = timezone.localtime(now)
    moment = timezone.make_aware(datetime.combine(local_now.date(), clock), timezone.get_current_timezone())
    if moment > now + OBSERVED_AT_SKEW:
        moment -= timedelta(days=1)
    return moment


def case_context(request, case: TriageCase, *, form_values=None, form_errors=None, box_errors=None) -> dict:
    user = request.user
    now = timezone.now()
    rules = unit_settings_get(unit=case.unit)
    # J/K follow the dashboard's time-first order (fresh frames first, grouped per baby).
    groups = queue_time.queue_groups(user=user, stale_after_minutes=rules.stale_after_minutes, now=now)
    previous, following = queue_time.queue_time_neighbours(user=user, case=case, groups=groups, queue=_free_queue(user))
    held_live = case.claim_is_live(now)
    held_by_me = held_live and case.claimed_by_id == user.pk
    already_scored = any(a.nurse_id == user.pk for a in case.assessments.all())
    decided = case.status == TriageCase.Status.DECIDED
    is_nurse = user.is_nurse
    prediction = case.prediction
    visible = selectors.assessments_visible(user=user, case=case)
    values = dict(form_values or {})
    observing = held_by_me and bedside.case_observing_at_bedside(case, now)
    if observing and not values.get("method"):
        values["method"] = Method.COT.value
    items = _items_context(values, form_errors or {})
    disagreement = disagreements.disagreement_for_case(case=case) if decided else None
    return {
        "case": case,
        # An undecided audit case hides the model's verdict (blind scoring, unbiased labels).
        "blind": case.is_audit and case.status != case.Status.DECIDED,
        "prediction": prediction,
        "frame": prediction.frame,
        "neonate": case.neonate,
        "rules": rules,
        "previous_case": previous,
        "next_case": following,
        "held_live": held_live,
        "held_by_me": held_by_me,
        "held_by_other": held_live and not held_by_me,
        "claim_seconds_left": max(0, int((case.claim_expires_at - now).total_seconds())) if held_by_me else 0,
        "claim_timeout_seconds": rules.claim_timeout_minutes * 60,
        # Entries sent back after a refusal (held by another nurse, decided meanwhile): shown, never dropped.
        "kept_entries": bool(form_values) and (decided or already_scored),
        "already_scored": already_scored,
        "decided": decided,
        "can_claim": is_nurse and not decided and not already_scored and not (held_live and not held_by_me),
        "form_enabled": is_nurse and held_by_me and not decided and not already_scored,
        "visible_assessments": visible,
        "hidden_assessments": len(case.assessments.all()) - len(visible),
        "items": items,
        "image_items": [item for item in items if not item["bedside"]],
        "bedside_items": [item for item in items if item["bedside"]],
        "methods": [
            {"value": value, "text": text, "checked": values.get("method") == value} for value, text in METHOD_CHOICES
        ],
        "observed_time": values.get("observed_time") or timezone.localtime(now).strftime("%H:%M"),
        "frames_around": bedside.frames_around(frame=prediction.frame),
        "can_go_to_cot": is_nurse and not decided and not already_scored and not (held_live and not held_by_me),
        "observing": observing,
        "bedside_until": (
            case.bedside_started_at + timedelta(seconds=bedside.OBSERVATION_SECONDS) if observing else None
        ),
        "bedside_related": bedside.bedside_related_cases(case=case, nurse=user) if observing else [],
        "bedside_window": rules.bedside_window_minutes,
        "disagreement": disagreement,
        "can_review_disagreement": bool(
            disagreement and disagreements.disagreement_can_review(user=user, flag=disagreement)
        ),
        "form_values": values,
        "form_errors": form_errors or {},
        "box_errors": box_errors or {},
        "auto_pain_above": prediction.threshold,
        "auto_nonpain_below": round(1 - prediction.threshold, 4),
        "unit_threshold": rules.threshold,
        "reason": routing_reason(
            p_pain=prediction.p_pain,
            confidence=prediction.confidence,
            threshold=prediction.threshold,
            routed_to=prediction.routed_to,
            is_bootstrap=prediction.model_version.is_bootstrap,
            is_audit=case.is_audit,
        ),
        "frame_stale": prediction.frame.captured_at < groups.cutoff,
        "stale_after": rules.stale_after_minutes,
        "saliency_absent": saliency_absent_reason(prediction, blind=case.is_audit and not decided),
    }


def saliency_absent_reason(prediction, *, blind: bool) -> str:
    """Why the case shows no Grad-CAM map ("" when it shows one): a missing panel is never left unexplained."""
    from django.conf import settings

    if blind:
        return "Hidden while this audit case is scored blind: the map would hint at the model's verdict."
    if prediction.saliency:
        return ""
    if prediction.routed_to == prediction.Route.AUTO:
        return "Not made: the model decided this frame by itself, and maps are made only for frames sent to a nurse."
    if not prediction.crop:
        return "Not made: no face crop was stored for this frame."
    if not settings.NEOPAIN_SALIENCY:
        return "Turned off on this server (NEOPAIN_SALIENCY=false)."
    return "Not made: nothing on the face raised the pain score (the map was empty), or making it failed."


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
@role_required(Role.NURSE)
def case_bedside(request, pk: int):
    """Go to the cot: claim the case (or extend the claim) and start the one-minute observation."""
    case = selectors.case_get(user=request.user, pk=pk)
    try:
        bedside.case_bedside_start(case=case, nurse=request.user, request=request)
    except services.CaseConflict as exc:
        messages.error(request, f"Not started: {exc.message}")
    return redirect("triage:case_detail", pk=case.pk)


@require_POST
@role_required(*CLINICAL)
def case_disagreement_review(request, pk: int):
    """The charge nurse marks a double-scoring disagreement reviewed."""
    case = selectors.case_get(user=request.user, pk=pk)
    try:
        disagreements.disagreement_review(
            case=case, user=request.user, note=request.POST.get("note", ""), request=request
        )
        messages.success(request, f"Disagreement on case {case.pk} marked reviewed.")
    except (disagreements.DisagreementReviewed, PermissionDenied, ValidationError) as exc:
        messages.error(request, getattr(exc, "message", None) or " ".join(getattr(exc, "messages", [str(exc)])))
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
        method=post.get("method", ""),
        observed_time=post.get("observed_time", ""),
        nurse_call=post.get("nurse_call", ""),
    )
    try:
        if not values["method"] and not values["unable_to_assess"]:
            # The form always asks how the baby was seen ("unrecorded" is for old rows and API clients).
            raise ValidationError(
                {"method": ["Say how the baby was observed: at the cot, from video, or the image only."]}
            )
        assessment = services.assessment_create(
            case=case,
            nurse=request.user,
            items={name: values[name] for name in NIPS_ITEMS},
            note=values["note"],
            intubated=values["intubated"],
            unable_to_assess=values["unable_to_assess"],
            unable_reason=values["unable_reason"],
            method=values["method"],
            observed_at=observed_at_from_form(values["observed_time"], now=timezone.now()),
            nurse_call={"pain": True, "no_pain": False}.get(values["nurse_call"]),
            # Only the cases she was shown (the box under the form) are resolved with this one.
            resolve_related=post.get("resolve_related") == "on",
            request=request,
        )
    except ValidationError as exc:
        context = case_context(request, case, form_values=values, form_errors=exc.message_dict)
        return render(request, "triage/case_detail.html", context, status=400)
    except services.CaseConflict as exc:
        # Her scores and note come back in the form (never an empty form); the page says why.
        case = selectors.case_get(user=request.user, pk=case_id)
        context = case_context(request, case, form_values=values)
        context["conflict"] = exc.message
        return render(request, "triage/case_detail.html", context, status=409)
    verdict = assessment_summary(assessment)
    tail = ""
    if assessment.pain:
        tail = " The pain team has been alerted."
    elif assessment.case.status != "decided":
        tail = " A second nurse will score it blind."
    copies = assessment.bedside_copies.select_related("case")
    if copies:
        also = ", ".join(str(copy.case_id) for copy in copies)
        tail += f" The same bedside observation resolved this baby's case{'s' if len(copies) > 1 else ''} {also}."
    messages.success(request, f"Case {case.pk} saved: {verdict}.{tail}")
    return redirect_to_next_case(request, case)


def _free_queue(user):
    """Her queue without the cases another nurse holds now: J and "next case" land only where she can score."""
    return selectors.cases_free_for(user=user, cases=selectors.queue_for_nurse(user=user))


def redirect_to_next_case(request, case: TriageCase):
    """After a submit, straight on to the first case she can score in the dashboard's order, else the queue."""
    rules = unit_settings_get(unit=case.unit)
    groups = queue_time.queue_groups(user=request.user, stale_after_minutes=rules.stale_after_minutes)
    following = queue_time.queue_time_ordered(_free_queue(request.user), groups=groups).first()
    if following is None:
        return redirect("triage:dashboard")
    return redirect("triage:case_detail", pk=following.pk)


def assessment_summary(assessment) -> str:
    """One line: "NIPS 5 — PAIN by rule total>=3 (at the cot)" or "face only — no pain (nurse's call)"."""
    if assessment.unable_to_assess:
        return "unable to assess"
    said = "PAIN" if assessment.pain else "no pain"
    if assessment.kind == Kind.NIPS:
        return f"NIPS {assessment.total} — {said} by rule {assessment.rule} ({assessment.method_label})"
    return f"{assessment.kind_label}, no NIPS total — {said} (nurse's call, {assessment.method_label})"


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
