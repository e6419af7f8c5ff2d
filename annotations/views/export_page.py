"""The export page (NIPS assessments as CSV/JSON lines)."""

from __future__ import annotations

from django.shortcuts import render
from django.urls import reverse

from annotations import selectors
from triage.models import Unit
from triage.views.access import CLINICAL, role_required


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
