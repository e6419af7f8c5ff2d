"""The unit admin's pages for people and babies, in the app rather than the Django admin.

Role checked on the server (unit admin; a superuser picks a unit with ``?unit=``), rows scoped to
the unit (another unit's person or baby is a 404), every change audited by the services.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from triage.models import Device, Neonate, Role, Unit, User
from triage.services.neonates import neonate_admit, neonate_discharge
from triage.services.people import (
    UNIT_ROLES,
    person_active_set,
    person_charge_nurse_set,
    person_create,
    person_role_set,
)
from triage.views.access import role_required

ROLE_CHOICES = [(r.value, r.label) for r in UNIT_ROLES]


def admin_unit(request) -> Unit:
    """The unit a unit admin manages: her own; a superuser without one picks it (``?unit=code``)."""
    if request.user.unit_id:
        return request.user.unit
    code = request.GET.get("unit") or request.POST.get("unit")
    unit = Unit.objects.filter(code=code).first() if code else Unit.objects.order_by("name").first()
    if unit is None:
        raise Http404("No unit.")
    return unit


def back_to(name: str, request, unit: Unit):
    suffix = f"?unit={unit.code}" if not request.user.unit_id else ""
    return redirect(reverse(name) + suffix)


def form_errors(form: forms.Form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


class PersonForm(forms.Form):
    username = forms.CharField(max_length=150, label="User name", help_text="What she types to sign in.")
    first_name = forms.CharField(max_length=150, required=False, label="First name")
    last_name = forms.CharField(max_length=150, required=False, label="Last name")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.NURSE, label="Role")
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        label="First password",
        help_text="Tell her in person; she changes it under Change password.",
    )


@require_http_methods(["GET", "POST"])
@role_required(Role.UNIT_ADMIN)
def people(request):
    unit = admin_unit(request)
    form = PersonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            person = person_create(unit=unit, actor=request.user, request=request, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            messages.success(
                request, f"{person.get_full_name() or person.username} added as {person.get_role_display().lower()}."
            )
            return back_to("triage:unit_people", request, unit)
    staff = User.objects.filter(unit=unit, role__in=UNIT_ROLES, is_superuser=False).order_by(
        "-is_active", "role", "username"
    )
    context = {
        "unit": unit,
        "form": form,
        "staff": staff,
        "role_choices": ROLE_CHOICES,
        "units": Unit.objects.order_by("name") if not request.user.unit_id else None,
    }
    return render(request, "triage/unit_people.html", context, status=400 if request.method == "POST" else 200)


@require_POST
@role_required(Role.UNIT_ADMIN)
def person_change(request, pk: int):
    unit = admin_unit(request)
    person = get_object_or_404(User, pk=pk, unit=unit, role__in=UNIT_ROLES, is_superuser=False)
    action = request.POST.get("action")
    try:
        if action in ("deactivate", "reactivate"):
            person = person_active_set(
                person=person, active=action == "reactivate", actor=request.user, request=request
            )
            done = "can sign in again" if person.is_active else "deactivated: she can no longer sign in"
        elif action == "role":
            person = person_role_set(
                person=person, role=request.POST.get("role", ""), actor=request.user, request=request
            )
            done = f"is now {person.get_role_display().lower()}"
        elif action in ("charge_on", "charge_off"):
            person = person_charge_nurse_set(
                person=person, charge=action == "charge_on", actor=request.user, request=request
            )
            done = (
                "is a charge nurse: escalated alerts go to her"
                if person.is_charge_nurse
                else "is no longer a charge nurse"
            )
        else:
            raise ValidationError("Unknown action.")
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, f"{person.get_full_name() or person.username} {done}.")
    return back_to("triage:unit_people", request, unit)


class AdmitForm(forms.Form):
    mrn = forms.CharField(max_length=64, label="MRN")
    bed = forms.CharField(max_length=32, label="Bed")
    gestational_age_weeks = forms.DecimalField(
        min_value=20,
        max_value=45,
        max_digits=4,
        decimal_places=1,
        required=False,
        label="Gestational age (weeks)",
        help_text="At birth, 20–45 weeks.",
    )


@require_http_methods(["GET", "POST"])
@role_required(Role.UNIT_ADMIN)
def babies(request):
    unit = admin_unit(request)
    form = AdmitForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            baby = neonate_admit(unit=unit, actor=request.user, request=request, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            messages.success(request, f"Admitted {baby.mrn} to bed {baby.bed}.")
            return back_to("triage:unit_babies", request, unit)
    admitted = Neonate.objects.filter(unit=unit, active=True).prefetch_related("cameras").order_by("bed", "mrn")
    discharged = Neonate.objects.filter(unit=unit, active=False).order_by("-discharged_at", "-id")[:20]
    context = {
        "unit": unit,
        "form": form,
        "admitted": admitted,
        "discharged": discharged,
        "cameras": Device.objects.filter(unit=unit, active=True).count(),
        "units": Unit.objects.order_by("name") if not request.user.unit_id else None,
    }
    return render(request, "triage/unit_babies.html", context, status=400 if request.method == "POST" else 200)


@require_POST
@role_required(Role.UNIT_ADMIN)
def baby_discharge(request, pk: int):
    unit = admin_unit(request)
    baby = get_object_or_404(Neonate, pk=pk, unit=unit)
    neonate_discharge(neonate=baby, actor=request.user, request=request)
    messages.success(
        request, f"Discharged {baby.mrn} (bed {baby.bed or '—'}). Its history stays; uploads for it are refused."
    )
    return back_to("triage:unit_babies", request, unit)
