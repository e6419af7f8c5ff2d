"""The nurse queue (dashboard): the unit's open cases, fresh frames first, grouped per baby (annotations/queue_time.py).

Live parts send the fingerprint of what they show (``v``): an unchanged queue answers 204 and htmx
leaves the page alone (no image re-requests, no audit noise).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from annotations import queue_time, selectors
from triage.selectors import beds_without_face, cameras_health
from triage.services import unit_settings_get
from triage.templatetags.neopain_ui import ago_text, local_stamp, prob
from triage.views.access import CLINICAL, has_role, is_poll, page_number

QUEUE_LIMIT = 50
"""Dashboard rows per page, most likely pain first. 200 rows took ~65 ms to render; a page of 50, ~2 ms
(scripts/bench_queue.py). The total waiting is always shown and the next 50 are one link away."""
QUEUE_ROW_VALUES = (
    *selectors.FINGERPRINT_VALUES,
    *("confidence", "is_audit", "created_at", "assessments_required", "neonate__bed", "neonate__mrn"),
    *("captured_at", "neonate_id", "prediction__frame__clip_id", "prediction__frame__clip_time_s"),
    *("claimed_by__username", "claimed_by__first_name", "claimed_by__last_name", "prediction_id"),
    *("prediction__p_pain", "prediction__threshold", "prediction__crop"),
    *("prediction__model_version__name", "prediction__model_version__version"),
)
"""The columns a dashboard row shows, read as values (no model instances, no metrics JSON)."""
PATH_PK = 987654321987
"""A stand-in primary key: a row's links are one reverse() per page, not two per row."""
POLL_SECONDS = 3


def _queue_rows(cases: list[dict], *, user, groups: queue_time.QueueGroups, offset: int) -> list[dict]:
    """What each dashboard row shows, from :func:`annotations.selectors.queue_values` rows.

    Made here, once, as plain strings: the template only places them (50 rows render in ~2 ms
    instead of ~5 ms of attribute chains and filters), and each link is one ``reverse()`` a page.
    The first row of each baby's group (and of each tier) carries the group's heading.
    """
    now = timezone.now()
    case_path = reverse("triage:case_detail", args=[PATH_PK])
    crop_path = reverse("triage:prediction_crop", args=[PATH_PK])
    rows = []
    previous_group = None
    for case in cases:
        held = bool(case["claimed_by_id"] and case["claim_expires_at"] and case["claim_expires_at"] > now)
        captured = case["captured_at"]
        holder = f"{case['claimed_by__first_name']} {case['claimed_by__last_name']}".strip()
        group = groups.group_of(neonate_id=case["neonate_id"], captured_at=captured)
        fresh = captured >= groups.cutoff
        heading = None
        if group is not None and group != previous_group:
            heading = {
                "tier": "fresh" if group.fresh else "stale",
                "new_tier": previous_group is None or previous_group.fresh != group.fresh,
                "summary": group.summary(now=now),
                "continued": group.start < offset,
            }
        previous_group = group
        rows.append(
            {
                "clip_key": (case["prediction__frame__clip_id"], group),
                "clip_time": case["prediction__frame__clip_time_s"],
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
                "captured": captured.isoformat(),
                "captured_title": local_stamp(captured),
                "captured_ago": ago_text(max(0, int((now - captured).total_seconds()))),
                "stale": not fresh,
                "group": heading,
                "held_by_me": held and case["claimed_by_id"] == user.pk,
                "held": held,
                "holder": (holder or case["claimed_by__username"]) if held else "",
                "second_scoring": case["assessments_required"] > 1,
                "assessments": f"{case['assessments_done']}/{case['assessments_required']}",
            }
        )
    return _clip_cases(rows)


def _clip_cases(rows: list[dict]) -> list[dict]:
    """A clip's keyframes on the page as one clip case: the most pain-like keyframe's row, with the sequence.

    The rows come in queue order, so the first keyframe of a clip in a group is its most pain-like;
    the others fold into its ``clip`` (every keyframe linked, in clip time order) instead of taking a
    row each (issue 13: a clip is one event at the cot, not five cases).
    """
    first: dict = {}
    kept = []
    for row in rows:
        clip_id, _ = row["clip_key"]
        if clip_id is None:
            kept.append(row)
            continue
        head = first.get(row["clip_key"])
        if head is None:
            first[row["clip_key"]] = row
            row["clip"] = [row]
            kept.append(row)
        else:
            head["clip"].append(row)
    for row in kept:
        if "clip" in row:
            frames = sorted(row["clip"], key=lambda r: (r["clip_time"] is None, r["clip_time"] or 0))
            times = [r["clip_time"] for r in frames if r["clip_time"] is not None]
            row["clip"] = {
                "frames": [
                    {"url": r["url"], "crop_url": r["crop_url"], "time": r["clip_time"], "this": r is row}
                    for r in frames
                ],
                "count": len(frames),
                "span": f"{min(times):.1f}–{max(times):.1f} s" if times else "",
            }
    return kept


@login_required
def dashboard(request):
    """The unit's open cases, most likely pain first, ``QUEUE_LIMIT`` a page. ML engineers and devices have no patient queue.

    The page always says how many cases wait in all and links to the next ones: a case beyond the
    first page is one click away, never silently left out.
    """
    user = request.user
    if not has_role(user, CLINICAL):
        return render(request, "triage/no_queue.html", {"role": user.get_role_display()})
    unit_settings = unit_settings_get(unit=user.unit) if user.unit_id and not is_poll(request) else None
    if unit_settings is not None:
        stale_after = unit_settings.stale_after_minutes
    else:  # a poll reads the one setting it needs
        stale_after = queue_time.stale_after_minutes_for(unit_id=user.unit_id)
    groups = queue_time.queue_groups(user=user, stale_after_minutes=stale_after)
    total = groups.total
    pages = max(1, -(-total // QUEUE_LIMIT))
    page = min(page_number(request), pages)  # the queue shrank under a later page: its last page
    # Only the groups this page cuts are read, at their own offset.
    queue, offset = queue_time.queue_time_window(
        selectors.queue_for_nurse(user=user), groups=groups, offset=(page - 1) * QUEUE_LIMIT, limit=QUEUE_LIMIT
    )
    first_shown = (page - 1) * QUEUE_LIMIT
    # The groups are part of what is shown: a frame turning stale moves it, so the poll swaps.
    shown = f"{total}|{groups.key()}"
    polled = request.GET.get("v") if is_poll(request) else None
    if polled and polled == selectors.queue_fingerprint_of(queue, limit=QUEUE_LIMIT, offset=offset, total=shown):
        return HttpResponse(status=204)
    cases = selectors.queue_values(
        selectors.queue_page_ids(queue, offset=offset, limit=QUEUE_LIMIT), values=QUEUE_ROW_VALUES
    )
    fingerprint = selectors.queue_fingerprint(cases, total=shown)
    rows = _queue_rows(cases, user=user, groups=groups, offset=first_shown)
    # Beds whose camera sees no face: no frame reaches the queue, so the nurse is told per bed.
    no_face = beds_without_face(unit=user.unit, since=groups.cutoff) if user.unit_id else []
    context = {
        "rows": rows,
        "total": total,
        "no_face_beds": no_face,
        "fresh_total": groups.fresh_total,
        "stale_total": groups.stale_total,
        "stale_after": stale_after,
        "page": page,
        "pages": pages,
        "first_shown": first_shown + 1,
        "last_shown": first_shown + len(rows),
        "more_after": max(0, total - first_shown - len(rows)),
        "next_count": min(QUEUE_LIMIT, max(0, total - first_shown - len(rows))),
        "queue_limit": QUEUE_LIMIT,
        "fingerprint": fingerprint,
        "poll_seconds": POLL_SECONDS,
        "can_claim": user.is_nurse or user.is_superuser,
    }
    if is_poll(request):
        return render(request, "triage/_queue.html", context)
    context["unit_settings"] = unit_settings
    if user.unit_id:
        offline_minutes = context["unit_settings"].device_offline_minutes
        context["cameras"] = cameras_health(unit=user.unit, offline_minutes=offline_minutes)
    return render(request, "triage/dashboard.html", context)
