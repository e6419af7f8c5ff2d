"""The unit admin's audit log page."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import render

from triage.audit_trail import audit_rows
from triage.models import AuditEvent, Role, Unit
from triage.views.access import role_required


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
            "rows": audit_rows(list(page.object_list)),
            "actions": actions,
            "filters": filters,
            "query": query.urlencode(),
            "units": Unit.objects.all() if user.is_superuser else [],
        },
    )
