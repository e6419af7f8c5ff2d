"""Issue 6, line 16: the same ``frame_process`` task delivered twice gives one prediction.

Late acks mean a message can arrive again (a worker lost after scoring but before the ack, the
sweeper publishing a frame whose message was only slow). Each path is exercised in-process with
the real pipeline; the 1,000-frame kill test also publishes 50 tasks twice through a real broker.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.faults.agent import face_images
from tests.hardening.conftest import media_files
from triage import services
from triage.models import Frame, Prediction, TriageCase
from triage.tasks import frame_process

pytestmark = [pytest.mark.faults, pytest.mark.django_db]


@pytest.fixture
def frame(neonate, real_model, enqueued):
    frame, _ = services.frame_ingest(neonate=neonate, image_file=next(face_images(1, offset=5000)), uploaded_by=None)
    return frame


def test_a_second_delivery_after_the_first_finished_does_nothing(frame):
    first = frame_process.apply(args=[frame.pk]).get()
    second = frame_process.apply(args=[frame.pk]).get()

    assert first["done"] == 1
    assert second["claimed"] == 0 and second["done"] == 0
    assert Prediction.objects.filter(frame=frame).count() == 1
    assert TriageCase.objects.filter(prediction__frame=frame).count() <= 1


def test_a_second_delivery_while_the_first_is_scoring_does_nothing(frame):
    Frame.objects.filter(pk=frame.pk).update(status=Frame.Status.PROCESSING, status_changed_at=timezone.now())

    result = frame_process.apply(args=[frame.pk]).get()

    assert result["claimed"] == 0
    assert Prediction.objects.filter(frame=frame).count() == 0
    assert Frame.objects.get(pk=frame.pk).status == "processing"  # still the first delivery's


def test_a_redelivery_racing_a_finished_score_is_recorded_as_a_duplicate(frame, media_root):
    """The sweeper re-queued a frame whose worker was only slow: the second score hits the unique key."""
    frame_process.apply(args=[frame.pk]).get()
    prediction = Prediction.objects.get(frame=frame)
    Frame.objects.filter(pk=frame.pk).update(status=Frame.Status.QUEUED, status_changed_at=timezone.now())

    result = frame_process.apply(args=[frame.pk]).get()

    assert result["duplicate"] == 1 and result["done"] == 0
    assert list(Prediction.objects.filter(frame=frame)) == [prediction]
    assert Frame.objects.get(pk=frame.pk).status == "done"
    assert [p.name for p in media_files(media_root / "crops")] == [prediction.crop.name.rsplit("/", 1)[-1]]
