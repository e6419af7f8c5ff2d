"""A broker outage never loses an upload: the frame is stored, stays queued, and the sweeper publishes it later."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from triage import services
from triage.models import Frame

pytestmark = pytest.mark.django_db

CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused


@pytest.fixture
def broker_down():
    """Point the Celery app at a closed port, as if Redis were stopped."""
    from neopain_site.celery import app

    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    app.conf.broker_url = CLOSED_PORT_BROKER
    app.conf.broker_transport_options = {"socket_connect_timeout": 2, "socket_timeout": 2, "max_retries": 1}
    app._after_fork()  # drop cached connection and producer pools
    yield
    app.conf.broker_url, app.conf.broker_transport_options = saved
    app._after_fork()


def test_an_upload_during_a_broker_outage_is_stored_and_answered_202_fast(
    client_for, device, neonate, upload_png, broker_down, django_capture_on_commit_callbacks
):
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_for(device.user).post(
            "/api/v1/frames/",
            {"neonate": neonate.mrn, "image": SimpleUploadedFile("f.png", upload_png, content_type="image/png")},
            format="multipart",
        )
    elapsed = time.monotonic() - started

    assert response.status_code == 202
    assert len(callbacks) == 1  # the publish was attempted (and failed) after commit
    frame = Frame.objects.get(pk=response.json()["id"])
    assert frame.status == "queued"
    assert frame.image.storage.exists(frame.image.name)
    assert elapsed < 5, f"publishing to a dead broker took {elapsed:.1f}s"


def test_enqueue_reports_nothing_published_when_the_broker_is_down(broker_down):
    started = time.monotonic()

    assert services.frames_enqueue(frame_ids=[1, 2, 3]) == 0
    assert time.monotonic() - started < 5


def test_the_sweeper_publishes_the_frame_once_the_broker_is_back(neonate, upload_png, broker_down, settings):
    frame, _ = services.frame_ingest(neonate=neonate, image_file=upload_png, uploaded_by=None)
    assert services.frames_sweep(stuck_seconds=0)["published"] == 0

    from neopain_site.celery import app

    app.conf.broker_url = settings.CELERY_BROKER_URL
    app.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    app._after_fork()

    assert services.frames_sweep(stuck_seconds=0)["published"] == 1
