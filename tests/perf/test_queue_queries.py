"""The nurse queue costs the same number of SQL queries however long it is.

Timings live in ``scripts/bench_queue.py`` (never in tests); here only the query count, which a
regression (a per-row lookup in the template, a serializer field or the fingerprint) would make
grow with the queue. Each page is read with a short queue and again with a long one that
exercises every per-row branch: a held case, a blind double-scored case with one assessment,
a crop, a saliency map, two models; and a second page.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotations.views import QUEUE_LIMIT
from tests.factories import (
    FrameFactory,
    ModelVersionFactory,
    NeonateFactory,
    NipsAssessmentFactory,
    PredictionFactory,
    TriageCaseFactory,
    UserFactory,
    png_bytes,
)
from triage.models import Role, TriageCase

pytestmark = pytest.mark.django_db


def add_cases(count: int, *, unit, models, colleague) -> None:
    """``count`` open cases spread over neonates and models, with the branches a row can take."""
    neonates = [NeonateFactory(unit=unit) for _ in range(3)]
    for i in range(count):
        created = timezone.now() - timedelta(minutes=i)
        frame = FrameFactory(neonate=neonates[i % 3], captured_at=created)
        prediction = PredictionFactory(
            frame=frame, model_version=models[i % len(models)], p_pain=0.5 + (i % 9) / 100, created_at=created
        )
        if i % 2 == 0:
            prediction.crop.save("crop.png", ContentFile(png_bytes(seed=i)), save=True)
        if i % 3 == 0:
            prediction.saliency.save("map.png", ContentFile(png_bytes(seed=i + 1)), save=True)
        case = TriageCaseFactory(prediction=prediction, created_at=created)
        if i % 4 == 1:  # held by a colleague
            TriageCase.objects.filter(pk=case.pk).update(
                status=TriageCase.Status.CLAIMED,
                claimed_by=colleague,
                claimed_at=created,
                claim_expires_at=timezone.now() + timedelta(minutes=10),
            )
        if i % 4 == 2:  # blind double scoring: the colleague scored first
            TriageCase.objects.filter(pk=case.pk).update(assessments_required=2)
            NipsAssessmentFactory(case=case, nurse=colleague)


def queries_for(client, url: str) -> int:
    client.get(url)  # the first request warms session and token look-ups
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code in (200, 204), (url, response.status_code)
    return len(captured.captured_queries)


@pytest.fixture
def queue_setup(unit, nurse):
    colleague = UserFactory(username="carla", role=Role.NURSE, unit=unit, first_name="Carla")
    # Cases scored by the active model and by a retired one (a queue spans a model swap).
    models = [
        ModelVersionFactory(name="painnet", unit=None),
        ModelVersionFactory(name="bootstrap", unit=None, status="retired"),
    ]
    return lambda count: add_cases(count, unit=unit, models=models, colleague=colleague)


def test_the_dashboard_query_count_does_not_grow_with_the_queue(browser_for, nurse, queue_setup):
    client = browser_for(nurse)
    queue_setup(4)
    short = queries_for(client, "/")
    queue_setup(QUEUE_LIMIT + 20)  # more than a page: the first page is full, the second partly
    assert queries_for(client, "/") == short
    assert queries_for(client, "/?page=2") == short
    # Session, user, count (issue 13: with the fresh/stale groups per baby), page ids, page rows, unit, its
    # settings, its cameras (issue 17), beds whose camera sees no face (issue 13: one aggregate over the
    # frames of the stale window), active model, session save (3), the open-alert badge in the top bar
    # (issue 13: one aggregate), the charge nurse's open score disagreements (issue 13: two).
    assert short <= 17  # including the phi.read audit row (issue 16)


def test_the_dashboard_poll_query_count_does_not_grow_with_the_queue(browser_for, nurse, queue_setup):
    import re

    client = browser_for(nurse)
    queue_setup(4)
    fingerprint = re.search(r"v=([0-9a-f]+)", client.get("/").content.decode()).group(1)
    unchanged_short = queries_for(client, f"/?poll=1&v={fingerprint}")
    changed_short = queries_for(client, "/?poll=1&v=stale")
    queue_setup(QUEUE_LIMIT + 20)
    fingerprint = re.search(r"v=([0-9a-f]+)", client.get("/").content.decode()).group(1)
    assert client.get(f"/?poll=1&v={fingerprint}").status_code == 204
    assert queries_for(client, f"/?poll=1&v={fingerprint}") == unchanged_short
    assert queries_for(client, "/?poll=1&v=stale") == changed_short
    assert queries_for(client, "/?poll=1&page=2&v=stale") == changed_short
    # Nothing changed: session, user, the unit's stale_after_minutes (issue 13: fresh frames first), the
    # groups with the count, and one narrow query; the page is not rebuilt.
    assert unchanged_short == 5 and unchanged_short < changed_short


@pytest.mark.parametrize("status", ["open", "decided"])
def test_the_queue_api_query_count_does_not_grow_with_the_queue(client_for, nurse, queue_setup, status):
    client = client_for(nurse)
    queue_setup(4)
    if status == "decided":
        TriageCase.objects.update(status=TriageCase.Status.DECIDED, decided_at=timezone.now())
    short = queries_for(client, f"/api/v1/cases/?status={status}")
    queue_setup(60)  # more than one page of 50
    if status == "decided":
        TriageCase.objects.update(status=TriageCase.Status.DECIDED, decided_at=timezone.now())
    assert queries_for(client, f"/api/v1/cases/?status={status}") == short
    assert queries_for(client, f"/api/v1/cases/?status={status}&page=2") == short
    assert queries_for(client, f"/api/v1/cases/?status={status}&page_size=200") == short
    assert short == 5  # token and user, count, page ids, page rows, the phi.read audit row


def test_the_queue_api_keyset_page_query_count_does_not_grow_with_the_queue(client_for, nurse, queue_setup):
    client = client_for(nurse)
    queue_setup(4)
    first = TriageCase.objects.order_by("-p_pain", "created_at", "id").first()  # the queue order
    short = queries_for(client, f"/api/v1/cases/?after={first.pk}")
    queue_setup(60)
    first = TriageCase.objects.order_by("-p_pain", "created_at", "id").first()  # the longer queue's head
    body = client.get(f"/api/v1/cases/?after={first.pk}").json()
    assert len(body["results"]) == 50 and body["next"]
    assert queries_for(client, f"/api/v1/cases/?after={first.pk}") == short
    assert queries_for(client, body["next"]) == short
    assert short == 6  # token and user, count, the cursor's case, page ids, page rows, the phi.read audit row
