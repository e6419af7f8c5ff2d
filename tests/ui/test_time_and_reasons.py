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
