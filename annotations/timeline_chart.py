"""Geometry of a baby's timeline (server-rendered SVG): p(pain), NIPS on its own axis, alerts, interventions.

Every event sits at the time it describes: a frame's p(pain) and a nurse's NIPS score at the time
the frame was captured (or the baby observed, when the assessment records it), not when the form
was submitted; an alert when it was raised; an intervention when the alert was acknowledged (its
note says what was done). Marks closer than a marker's width in the same lane (and, for NIPS, with
the same total) are drawn as one, with a count, so no marker is printed over another.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from triage.models import Prediction

NIPS_MAX = 7
MARK_GAP_PX = 18.0
"""Marks nearer than this (a marker's width) in one lane merge into one."""


def assessment_time(assessment) -> datetime:
    """When what the nurse scored happened: the observation time if recorded, else the frame's capture time."""
    observed = getattr(assessment, "observed_at", None)
    if observed:
        return observed
    case = assessment.case
    return getattr(case, "captured_at", None) or assessment.created_at


def merge_marks(marks: list[dict], *, key=lambda mark: None, gap: float = MARK_GAP_PX) -> list[dict]:
    """``marks`` (each with ``x`` and ``items``) merged where two of the same ``key`` lie closer than ``gap``.

    A merged mark sits at the mean x of its items and keeps them all (its ``count``): the chart shows
    one marker with the count instead of markers printed over each other.
    """
    merged: list[dict] = []
    open_by_key: dict = {}
    for mark in sorted(marks, key=lambda m: m["x"]):
        k = key(mark)
        current = open_by_key.get(k)
        if current is not None and mark["x"] - current["x_first"] < gap:
            current["items"].extend(mark["items"])
            current["xs"].append(mark["x"])
            continue
        current = {**mark, "items": list(mark["items"]), "xs": [mark["x"]], "x_first": mark["x"]}
        open_by_key[k] = current
        merged.append(current)
    for mark in merged:
        mark["x"] = round(sum(mark["xs"]) / len(mark["xs"]), 1)
        mark["count"] = len(mark["items"])
    return merged


def timeline_chart(
    *,
    predictions,
    assessments,
    alerts,
    since,
    until,
    threshold: float,
    nips_pain_threshold: int = 3,
    width: int = 960,
) -> dict:
    """Coordinates for templates/triage/timeline.html: two panels (p(pain) 0-1, NIPS 0-7) and two lanes."""
    left, right = 64, 64  # the right margin holds the threshold lines' values (never printed over marks)
    alert_lane_y, intervention_lane_y = 22, 50
    p_top, p_h = 80, 170
    nips_top, nips_h = p_top + p_h + 36, 18 * NIPS_MAX
    height = nips_top + nips_h + 40
    plot_w = width - left - right
    span = max(1.0, (until - since).total_seconds())

    def x_at(moment) -> float:
        return round(left + plot_w * min(1.0, max(0.0, (moment - since).total_seconds() / span)), 1)

    def y_p(p: float) -> float:
        return round(p_top + p_h * (1 - p), 1)

    def y_nips(total: float) -> float:
        return round(nips_top + nips_h * (1 - total / NIPS_MAX), 1)

    points = [
        {
            "x": x_at(p.frame.captured_at),
            "y": y_p(p.p_pain),
            "p": p.p_pain,
            "auto": p.routed_to == Prediction.Route.AUTO,
            "at": p.frame.captured_at,
            "model": p.model_version.label,
        }
        for p in predictions
    ]
    nips = merge_marks(
        [{"x": x_at(assessment_time(a)), "total": a.total, "items": [a]} for a in assessments],
        key=lambda mark: mark["total"],
    )
    for mark in nips:
        total = mark["total"]
        mark["y"] = y_nips(total) if total is not None else y_nips(0) + 14
        mark["pain"] = any(a.pain for a in mark["items"])
        mark["at"] = assessment_time(mark["items"][0])
    alert_marks = merge_marks(
        [{"x": x_at(a.created_at), "items": [a]} for a in alerts if since <= a.created_at <= until]
    )
    interventions = merge_marks(
        [
            {"x": x_at(a.acknowledged_at), "items": [a]}
            for a in alerts
            if a.acknowledged_at and since <= a.acknowledged_at <= until
        ]
    )
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
        "plot_w": plot_w,
        "top": p_top,
        "bottom": p_top + p_h,
        "plot_h": p_h,
        "nips_top": nips_top,
        "nips_bottom": nips_top + nips_h,
        "nips_h": nips_h,
        "x_label_y": nips_top + nips_h + 24,
        "points": points,
        "polyline": " ".join(f"{pt['x']},{pt['y']}" for pt in points),
        "y_pain": y_p(threshold),
        "y_nonpain": y_p(1 - threshold),
        "band_h": round(y_p(1 - threshold) - y_p(threshold), 1),
        "threshold": threshold,
        "nonpain_limit": round(1 - threshold, 2),
        "y_ticks": [{"y": y_p(v), "label": f"{v:.2f}"} for v in (0, 0.25, 0.5, 0.75, 1.0)],
        "nips_ticks": [{"y": y_nips(v), "label": str(v)} for v in range(0, NIPS_MAX + 1)],
        "nips_rule": nips_pain_threshold,
        "y_nips_rule": y_nips(nips_pain_threshold),
        "x_ticks": ticks,
        "alert_lane_y": alert_lane_y,
        "intervention_lane_y": intervention_lane_y,
        "alert_marks": alert_marks,
        # Each alert's span: from its first pain verdict to the last one counted on it (repeats).
        "alert_spans": [
            {"x": x_at(a.created_at), "w": max(2.0, round(x_at(a.last_event_at) - x_at(a.created_at), 1)), "a": a}
            for a in alerts
        ],
        "nips_marks": nips,
        "intervention_marks": interventions,
    }
