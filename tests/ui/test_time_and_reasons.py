"""Issue 13 (part b): time first on the pages, routing reasons and the Grad-CAM panel's absence."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from tests.factories import ModelVersionFactory
from tests.ui.conftest import face_png, make_case
from triage.templatetags.neopain_ui import ago_text, time_ago

pytestmark = pytest.mark.django_db


def html(response) -> str:
    return response.content.decode()


# --- one time label ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "just now"), (59, "just now"), (60, "1 min ago"), (125 * 60, "2 h 05 min ago"), (3 * 86400, "3 d ago")],
)
def test_ago_text_never_says_just_now_ago(seconds, text):
    assert ago_text(seconds) == text


def test_time_ago_carries_the_absolute_time_on_hover_and_clamps_the_future():
    moment = timezone.now() - timedelta(minutes=2)
    label = str(time_ago(moment))
    assert ">2 min ago</time>" in label and f'datetime="{moment.isoformat()}"' in label
    assert re.search(r'title="\w{3} \d{1,2} \w{3} \d{4}, \d\d:\d\d:\d\d', label)
    assert ">just now</time>" in str(time_ago(timezone.now() + timedelta(minutes=5)))
    assert time_ago(None) == ""


# --- the case page ----------------------------------------------------------------------------


def test_the_case_header_gives_the_frame_age(browser_for, nurse, neonate, model):
    case = make_case(neonate=neonate, model=model, age_minutes=125)
    page = html(browser_for(nurse).get(f"/cases/{case.pk}/"))
    assert re.search(r"frame captured <time [^>]*>2 h 05 min ago</time>", page)


def test_the_case_page_words_the_routing_from_the_one_function(browser_for, nurse, neonate, model):
    case = make_case(neonate=neonate, model=model, p_pain=0.5)
    page = html(browser_for(nurse).get(f"/cases/{case.pk}/"))
    assert "undecided" in page and "towards no pain" not in page
    assert "confidence 0.50 is below the threshold 0.55" in page
    assert "left: 45.00%; width: 10.00%" in page  # the nurse band is (0.45, 0.55), as routed


def test_the_bootstrap_case_says_the_model_never_decides_alone(browser_for, nurse, neonate):
    bootstrap = ModelVersionFactory(name="bootstrap", unit=None, is_bootstrap=True)
    case = make_case(neonate=neonate, model=bootstrap, p_pain=0.9)
    case.prediction.routed_to = "nurse"
    case.prediction.save()
    page = html(browser_for(nurse).get(f"/cases/{case.pk}/"))
    assert "This model never decides alone" in page and "below the threshold" not in page
    assert "left: 0.00%; width: 100.00%" in page


def test_the_grad_cam_panel_says_why_it_is_absent(browser_for, nurse, neonate, model, settings):
    client = browser_for(nurse)
    case = make_case(neonate=neonate, model=model)
    assert "nothing on the face raised the pain score" in html(client.get(f"/cases/{case.pk}/"))
    settings.NEOPAIN_SALIENCY = False
    assert "Turned off on this server" in html(client.get(f"/cases/{case.pk}/"))
    no_crop = make_case(neonate=neonate, model=model, crop=False)
    assert "no face crop was stored" in html(client.get(f"/cases/{no_crop.pk}/"))
    audit = make_case(neonate=neonate, model=model, p_pain=0.95, is_audit=True)
    assert "scored blind" in html(client.get(f"/cases/{audit.pk}/"))
    case.prediction.saliency.save("s.png", ContentFile(face_png()), save=True)
    page = html(client.get(f"/cases/{case.pk}/"))
    assert "data-saliency-absent" not in page and f"/predictions/{case.prediction.pk}/saliency" in page


# --- the time-first queue ---------------------------------------------------------------------


def queue_ids(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'class="case-link" href="/cases/(\d+)/"', page)]


@pytest.fixture
def babies(unit):
    from tests.factories import NeonateFactory

    return [NeonateFactory(unit=unit, bed=str(i), mrn=f"MRN-T-{i}") for i in (1, 2, 3)]


def test_fresh_frames_come_first_grouped_per_baby_and_stale_ones_after(browser_for, nurse, babies, model):
    one, two, three = babies
    stale_pain = make_case(neonate=one, model=model, p_pain=0.54, age_minutes=120)  # most pain-like, but stale
    fresh_low = make_case(neonate=two, model=model, p_pain=0.46, age_minutes=2)
    fresh_high = make_case(neonate=three, model=model, p_pain=0.53, age_minutes=4.5)
    fresh_high_same_baby = make_case(neonate=three, model=model, p_pain=0.47, age_minutes=1)
    fresh_one = make_case(neonate=one, model=model, p_pain=0.45, age_minutes=2.5)
    page = html(browser_for(nurse).get("/"))
    # Fresh tier: bed 3 (max p 0.53), bed 2 (0.46), bed 1 (0.45); then bed 1's stale frame.
    assert queue_ids(page) == [fresh_high.pk, fresh_high_same_baby.pk, fresh_low.pk, fresh_one.pk, stale_pain.pk]
    assert "2 frames in the last 5 minutes" in page
    assert "1 frame in the last 3 minutes" in page
    assert "1 older frame, captured 2 h 00 min ago" in page
    assert "<strong>4 fresh</strong> (captured in the last 10 minutes) first, then <strong>1 stale</strong>" in page
    assert page.count("data-queue-group") == 4 and page.count('class="tag tag--stale"') == 1
    assert ">2 min ago</time>" in page  # every row carries its frame's age


def test_the_stale_limit_is_the_units_setting(browser_for, nurse, unit, babies, model):
    from triage.services import unit_settings_update

    old = make_case(neonate=babies[0], model=model, p_pain=0.54, age_minutes=30)
    new = make_case(neonate=babies[1], model=model, p_pain=0.46, age_minutes=1)
    assert queue_ids(html(browser_for(nurse).get("/"))) == [new.pk, old.pk]
    unit_settings_update(unit=unit, actor=None, changes={"stale_after_minutes": 60})
    page = html(browser_for(nurse).get("/"))
    assert queue_ids(page) == [old.pk, new.pk]  # both fresh now: pain-like baby first
    assert "captured in the last 60 minutes" in page


def test_a_queue_of_stale_frames_only_says_so(browser_for, nurse, babies, model):
    make_case(neonate=babies[0], model=model, age_minutes=45)
    page = html(browser_for(nurse).get("/"))
    assert "No fresh frames:" in page and "more than 10 minutes ago" in page


def test_the_poll_swaps_when_a_frame_turns_stale(browser_for, nurse, babies, model, settings):
    client = browser_for(nurse)
    case = make_case(neonate=babies[0], model=model, age_minutes=9)
    fingerprint = re.search(r"v=([0-9a-f]+)", html(client.get("/"))).group(1)
    assert client.get(f"/?poll=1&v={fingerprint}").status_code == 204
    type(case).objects.filter(pk=case.pk).update(captured_at=timezone.now() - timedelta(minutes=11))
    assert client.get(f"/?poll=1&v={fingerprint}").status_code == 200


def test_a_group_split_over_two_pages_says_continued(browser_for, nurse, babies, model):
    from annotations.views import QUEUE_LIMIT

    for i in range(QUEUE_LIMIT + 2):
        make_case(neonate=babies[0], model=model, p_pain=0.5 + (i % 5) / 100, age_minutes=20 + i, crop=False)
    second = html(browser_for(nurse).get("/?page=2"))
    assert "(continued)" in second and f"{QUEUE_LIMIT + 2} older frames" in second


def test_j_and_k_follow_the_time_first_order_across_groups(browser_for, nurse, babies, model):
    fresh = make_case(neonate=babies[0], model=model, p_pain=0.46, age_minutes=1)
    stale_high = make_case(neonate=babies[1], model=model, p_pain=0.54, age_minutes=60)
    stale_low = make_case(neonate=babies[1], model=model, p_pain=0.50, age_minutes=70)
    page = html(browser_for(nurse).get(f"/cases/{stale_high.pk}/"))
    assert f'data-prev-url="/cases/{fresh.pk}/"' in page and f'data-next-url="/cases/{stale_low.pk}/"' in page
    assert "data-stale-warning" in page and "more than 10 minutes ago" in page
    assert "data-stale-warning" not in html(browser_for(nurse).get(f"/cases/{fresh.pk}/"))


def test_a_new_case_copies_its_frames_capture_time(unit, neonate, model):
    from types import SimpleNamespace

    from tests.factories import FrameFactory
    from triage.services.predictions import _prediction_build
    from triage.services.units import unit_settings_get

    captured = timezone.now() - timedelta(minutes=42)
    frame = FrameFactory(neonate=neonate, captured_at=captured)
    outcome = SimpleNamespace(
        confidence=0.52,
        p_pain=0.52,
        label="pain",
        box=(1, 2, 3, 4),
        timings_ms={},
        crop=None,
        weights_sha256="",
        frame_sha256="",
    )
    _, case = _prediction_build(
        frame=frame,
        outcome=outcome,
        classifier=model,
        detector=None,
        detector_name="test",
        pipeline=None,
        unit_policy=unit_settings_get(unit=unit),
        now=timezone.now(),
    )
    assert case is not None and case.captured_at == captured


def test_the_stale_setting_is_editable_in_the_api_and_the_form(client_for, browser_for, unit, unit_admin):
    from triage.models import AuditEvent, UnitSettings

    response = client_for(unit_admin).patch(f"/api/v1/units/{unit.pk}/", {"stale_after_minutes": 15}, format="json")
    assert response.status_code == 200 and response.json()["settings"]["stale_after_minutes"] == 15
    assert (
        client_for(unit_admin).patch(f"/api/v1/units/{unit.pk}/", {"stale_after_minutes": 0}, format="json").status_code
        == 400
    )
    event = AuditEvent.objects.filter(action="unit_settings.updated").latest("id")
    assert event.before == {"stale_after_minutes": 10} and event.after == {"stale_after_minutes": 15}
    page = html(browser_for(unit_admin).get("/unit/settings/"))
    assert 'name="stale_after_minutes"' in page and "Frame stale after (minutes)" in page
    assert UnitSettings.objects.get(unit=unit).stale_after_minutes == 15


# --- beds whose camera sees no face ------------------------------------------------------------


def test_a_bed_whose_newest_frames_have_no_face_is_named_on_the_queue(browser_for, nurse, babies, model):
    from tests.factories import FrameFactory

    now = timezone.now()
    one, two, three = babies
    FrameFactory(neonate=one, status="done", captured_at=now - timedelta(minutes=6))
    for minutes in (4, 2, 1):
        FrameFactory(neonate=one, status="no_face", captured_at=now - timedelta(minutes=minutes))
    FrameFactory(neonate=two, status="no_face", captured_at=now - timedelta(minutes=5))
    FrameFactory(neonate=two, status="done", captured_at=now - timedelta(minutes=1))  # a face again: no warning
    FrameFactory(neonate=three, status="no_face", captured_at=now - timedelta(minutes=30))  # outside the window
    page = html(browser_for(nurse).get("/"))
    assert page.count("data-no-face-bed=") == 1
    assert 'data-no-face-bed="1"' in page and "camera sees no face" in page
    assert "3 frames without a face, the latest <time" in page and "last face <time" in page


def test_pages_read_only_the_groups_they_cut_and_add_up_to_the_whole_order(nurse, unit, model):
    from annotations import queue_time, selectors
    from tests.factories import NeonateFactory

    babies = [NeonateFactory(unit=unit, bed=f"B{i}") for i in range(4)]
    for i in range(23):
        make_case(neonate=babies[i % 4], model=model, p_pain=0.45 + (i % 7) / 100, age_minutes=(i * 3) % 40, crop=False)
    groups = queue_time.queue_groups(user=nurse, stale_after_minutes=10)
    whole = list(
        queue_time.queue_time_ordered(selectors.queue_for_nurse(user=nurse), groups=groups).values_list("pk", flat=True)
    )
    paged = []
    for offset in range(0, 23, 7):
        window, local = queue_time.queue_time_window(
            selectors.queue_for_nurse(user=nurse), groups=groups, offset=offset, limit=7
        )
        paged += list(window.values_list("pk", flat=True)[local : local + 7])
    assert paged == whole and len(whole) == 23


def test_a_clips_keyframes_are_one_clip_case_with_its_sequence(browser_for, nurse, babies, model):
    from triage.models import Clip

    clip = Clip.objects.create(neonate=babies[0], unit=babies[0].unit, video="clips/x.mp4", sha256="c" * 64)
    keyframes = []
    for t, p in ((0.0, 0.47), (5.0, 0.53), (10.0, 0.5)):
        case = make_case(neonate=babies[0], model=model, p_pain=p, age_minutes=3 - t / 60)
        case.prediction.frame.clip, case.prediction.frame.clip_time_s = clip, t
        case.prediction.frame.save()
        keyframes.append(case)
    single = make_case(neonate=babies[0], model=model, p_pain=0.49, age_minutes=1)
    page = html(browser_for(nurse).get("/"))
    # One row for the clip (its most pain-like keyframe, 5.0 s), one for the single frame.
    assert queue_ids(page) == [keyframes[1].pk, single.pk]
    assert "Clip: 3 keyframes, 0.0–10.0 s" in page
    sequence = re.search(r'<ol class="clip-case__frames".*?</ol>', page, re.S).group(0)
    assert re.findall(r'href="/cases/(\d+)/"', sequence) == [str(c.pk) for c in keyframes]  # clip time order
    assert "3 frames in the last" not in page and "4 frames in the last" in page  # the group still counts frames
