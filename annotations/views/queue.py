"""The nurse queue (dashboard): the unit's open cases, most likely pain first.

Live parts send the fingerprint of what they show (``v``): an unchanged queue answers 204 and htmx
leaves the page alone (no image re-requests, no audit noise).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from annotations import selectors
from triage.selectors import cameras_health
from triage.services import unit_settings_get
from triage.templatetags.neopain_ui import age_text, prob
from triage.views.access import CLINICAL, has_role, is_poll, page_number

QUEUE_LIMIT = 50
"""Dashboard rows per page, most likely pain first. 200 rows took ~65 ms to render; a page of 50, ~2 ms
(scripts/bench_queue.py). The total waiting is always shown and the next 50 are one link away."""
QUEUE_ROW_VALUES = (
    *selectors.FINGERPRINT_VALUES,
    *("confidence", "is_audit", "created_at", "assessments_required", "neonate__bed", "neonate__mrn"),
    *("claimed_by__username", "claimed_by__first_name", "claimed_by__last_name", "prediction_id"),
    *("prediction__p_pain", "prediction__threshold", "prediction__crop"),
    *("prediction__model_version__name", "prediction__model_version__version"),
)
"""The columns a dashboard row shows, read as values (no model instances, no metrics JSON)."""
PATH_PK = 987654321987
"""A stand-in primary key: a row's links are one reverse() per page, not two per row."""
POLL_SECONDS = 3


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
                # An audit case is scored blind: no model verdict on the row either.
                "p_pain": "—" if case["is_audit"] else prob(case["prediction__p_pain"]),
                "confidence": "—" if case["is_audit"] else prob(case["confidence"]),
                "audit": case["is_audit"],
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
    """The unit's open cases, most likely pain first, ``QUEUE_LIMIT`` a page. ML engineers and devices have no patient queue.

    The page always says how many cases wait in all and links to the next ones: a case beyond the
    first page is one click away, never silently left out.
    """
    user = request.user
    if not has_role(user, CLINICAL):
        return render(request, "triage/no_queue.html", {"role": user.get_role_display()})
    queue = selectors.queue_for_nurse(user=user)
    total = selectors.queue_count(user=user)
    pages = max(1, -(-total // QUEUE_LIMIT))
    page = min(page_number(request), pages)  # the queue shrank under a later page: its last page
    offset = (page - 1) * QUEUE_LIMIT
    polled = request.GET.get("v") if is_poll(request) else None
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
    if is_poll(request):
        return render(request, "triage/_queue.html", context)
    context["unit_settings"] = unit_settings_get(unit=user.unit) if user.unit_id else None
    if user.unit_id:
        offline_minutes = context["unit_settings"].device_offline_minutes
        context["cameras"] = cameras_health(unit=user.unit, offline_minutes=offline_minutes)
    return render(request, "triage/dashboard.html", context)
