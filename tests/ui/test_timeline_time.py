"""The baby's timeline (issue 13, item 10): NIPS on its own 0-7 axis at the frame's time, no marker over
another, interventions from acknowledged alerts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.timeline_chart import merge_marks, timeline_chart
from tests.factories import AlertFactory, NipsAssessmentFactory
from tests.ui.conftest import make_case

pytestmark = pytest.mark.django_db


def chart_for(neonate, hours=6, **extra):
    from annotations.selectors import neonate_timeline

    until = timezone.now()
    since = until - timedelta(hours=hours)
    return timeline_chart(
        since=since, until=until, threshold=0.55, **neonate_timeline(neonate=neonate, since=since, until=until)
    )


def test_a_nips_score_is_plotted_at_its_frames_time_on_its_own_axis(nurse, neonate, model):
    case = make_case(neonate=neonate, model=model, age_minutes=180)  # frame 3 h ago, scored just now
    NipsAssessmentFactory(case=case, nurse=nurse, total=5, pain=True)
    chart = chart_for(neonate)
    (mark,) = chart["nips_marks"]
    (point,) = chart["points"]
    assert mark["x"] == point["x"]  # same moment as the frame's p(pain), not the submit time (the right edge)
    assert mark["x"] < chart["right"] - 100
    ticks = {t["label"]: t["y"] for t in chart["nips_ticks"]}
    assert mark["y"] == ticks["5"] and chart["nips_top"] <= mark["y"] <= chart["nips_bottom"]
    assert chart["nips_bottom"] < chart["x_label_y"] and chart["bottom"] < chart["nips_top"]  # apart from p(pain)


def test_an_assessment_of_an_old_frame_submitted_now_is_in_the_window_of_its_frame(nurse, neonate, model):
    case = make_case(neonate=neonate, model=model, age_minutes=60 * 30)  # frame 30 h ago
    NipsAssessmentFactory(case=case, nurse=nurse)
    assert chart_for(neonate, hours=6)["nips_marks"][0]["x"] == chart_for(neonate, hours=6)["left"]  # clamped
    assert chart_for(neonate, hours=72)["nips_marks"][0]["x"] > chart_for(neonate, hours=72)["left"]


def test_close_marks_of_one_lane_merge_and_far_or_different_ones_do_not():
    marks = [{"x": 100.0, "items": ["a"]}, {"x": 110.0, "items": ["b"]}, {"x": 140.0, "items": ["c"]}]
    merged = merge_marks(marks)
    assert [(m["x"], m["count"]) for m in merged] == [(105.0, 2), (140.0, 1)]
    by_total = merge_marks(
        [
            {"x": 100.0, "total": 3, "items": [1]},
            {"x": 104.0, "total": 5, "items": [2]},
            {"x": 108.0, "total": 3, "items": [3]},
        ],
        key=lambda m: m["total"],
    )
    assert sorted((m["total"], m["count"]) for m in by_total) == [(3, 2), (5, 1)]


def test_no_two_drawn_marks_overlap(nurse, second_nurse, neonate, model):
    for minutes in (60, 61, 62, 90):
        case = make_case(neonate=neonate, model=model, age_minutes=minutes)
        NipsAssessmentFactory(case=case, nurse=nurse, total=4, pain=True)
    for minutes in (30, 31, 200):
        AlertFactory(neonate=neonate, created_at=timezone.now() - timedelta(minutes=minutes))
    chart = chart_for(neonate)
    for lane in ("nips_marks", "alert_marks"):
        marks = sorted(chart[lane], key=lambda m: (m.get("y", 0), m["x"]))
        for a, b in zip(marks, marks[1:]):
            assert not (a.get("y") == b.get("y") and b["x"] - a["x"] < 18), (lane, a["x"], b["x"])
    assert sorted(m["count"] for m in chart["nips_marks"]) == [1, 3]
    assert sorted(m["count"] for m in chart["alert_marks"]) == [1, 2]


def test_acknowledged_alerts_show_as_interventions_with_their_note(browser_for, nurse, neonate, model):
    now = timezone.now()
    AlertFactory(
        neonate=neonate,
        created_at=now - timedelta(minutes=50),
        acknowledged_at=now - timedelta(minutes=40),
        acknowledged_by=nurse,
        ack_note="Sucrose 24% given, swaddled",
    )
    AlertFactory(neonate=neonate, created_at=now - timedelta(minutes=20))  # open: no intervention yet
    page = browser_for(nurse).get(f"/neonates/{neonate.pk}/timeline/?hours=6").content.decode()
    assert page.count('class="tl-intervention"') == 1 and "Sucrose 24% given, swaddled" in page
    assert re.search(r"NIPS total</text>", page) and "pain by the rule total ≥ 3" in page


def test_the_tables_give_the_frame_time_and_the_scoring_time(browser_for, nurse, neonate, model):
    case = make_case(neonate=neonate, model=model, age_minutes=125)
    NipsAssessmentFactory(case=case, nurse=nurse, total=2, pain=False)
    page = browser_for(nurse).get(f"/neonates/{neonate.pk}/timeline/").content.decode()
    assert '<th scope="col">Frame</th><th scope="col">Scored</th>' in page
    assert re.search(r'<time datetime="[^"]+" title="[^"]+\(2 h 05 min ago\)">\d\d:\d\d</time>', page)
