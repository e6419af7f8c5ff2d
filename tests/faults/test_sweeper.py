"""Issue 6, line 20: the sweeper re-queues frames stuck in ``queued`` or ``processing`` past the timeout.

``queued`` too long: the broker was down when the frame was stored (or lost its message).
``processing`` too long: the worker died mid-batch. Both are published again; fresh frames and
finished ones are left alone. Beat runs it every minute; ``manage.py sweep_frames`` does the same.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.factories import FrameFactory
from triage import services
from triage.models import Frame

pytestmark = [pytest.mark.faults, pytest.mark.django_db]

STUCK = 120


@pytest.fixture
def frames(neonate, settings):
    settings.NEOPAIN_STUCK_FRAME_SECONDS = STUCK
    now = timezone.now()

    def make(status, age_seconds):
        frame = FrameFactory(neonate=neonate, status=status)
        Frame.objects.filter(pk=frame.pk).update(status_changed_at=now - timedelta(seconds=age_seconds))
        return frame.pk

    return {
        "queued_stuck": make("queued", STUCK + 30),
        "processing_stuck": make("processing", STUCK + 30),
        "queued_fresh": make("queued", STUCK - 30),
        "processing_fresh": make("processing", STUCK - 30),
        "done_old": make("done", STUCK * 10),
        "failed_old": make("failed", STUCK * 10),
    }


def published_ids(enqueued) -> list[int]:
    return sorted(args[0] for name, args, _ in enqueued if name == "frame_process")


def test_stuck_frames_are_re_queued_and_published_again(frames, enqueued):
    result = services.frames_sweep()

    assert result["frames"] == result["published"] == 2
    assert published_ids(enqueued) == sorted([frames["queued_stuck"], frames["processing_stuck"]])
    stuck = Frame.objects.get(pk=frames["processing_stuck"])
    assert stuck.status == "queued" and stuck.reason == "re-queued after a worker stalled"
    assert Frame.objects.get(pk=frames["queued_stuck"]).status == "queued"


def test_fresh_and_finished_frames_are_left_alone(frames, enqueued):
    before = {k: Frame.objects.get(pk=pk).status for k, pk in frames.items()}

    services.frames_sweep()

    for key in ("queued_fresh", "processing_fresh", "done_old", "failed_old"):
        assert Frame.objects.get(pk=frames[key]).status == before[key], key
        assert frames[key] not in published_ids(enqueued)


def test_the_timeout_is_the_setting(frames, enqueued, settings):
    settings.NEOPAIN_STUCK_FRAME_SECONDS = STUCK - 60

    assert services.frames_sweep()["frames"] == 4


def test_the_management_command_and_the_beat_schedule_run_the_sweeper(frames, enqueued):
    from neopain_site.celery import app

    call_command("sweep_frames")

    assert len(published_ids(enqueued)) == 2
    schedule = app.conf.beat_schedule["sweep-stuck-frames"]
    assert schedule["task"] == "triage.tasks.frames_sweep"
    assert schedule["schedule"].total_seconds() <= 60
