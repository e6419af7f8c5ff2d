"""Issue 6, line 19: a task over its time limit ends ``failed`` with a reason; retries stop at the maximum,
with growing back-off.

The time limit runs in a real prefork worker (the soft limit is a signal from the pool's parent)
whose model is made to hang (``tests/faults/slow_worker.py``). Retries run in-process: the
database fails under ``frames_process``, which releases the frames and asks Celery to retry;
Celery's own autoretry computes each countdown.
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

from tests.faults import harness
from tests.faults.agent import face_images
from triage import services
from triage.models import Frame
from triage.services import worker
from triage.tasks import RETRY_OPTIONS, frame_process

SOFT_LIMIT_SECONDS = 3


@pytest.mark.faults
@pytest.mark.slow
def test_a_batch_over_the_soft_time_limit_fails_its_frames_with_a_reason(fault_app):
    app = fault_app
    app.env.update(
        {
            "CELERY_TASK_SOFT_TIME_LIMIT": str(SOFT_LIMIT_SECONDS),
            "CELERY_TASK_TIME_LIMIT": "20",
            "NEOPAIN_FAULT_SLOW_SECONDS": "120",
        }
    )
    app.agent("ingest", "--count", "3", "--offset", "6000")  # waiting before the worker starts: one batch
    worker = app.worker("slow-worker", module="tests.faults.slow_worker")

    def ended(expected: int):
        def check():
            rows = app.pg.query("SELECT status, reason FROM triage_frame ORDER BY id", app.dbname)
            done = len(rows) == expected and all(status not in ("queued", "processing") for status, _ in rows)
            return rows if done else None

        return check

    rows = harness.wait_for(ended(3), timeout=90, what="the first batch to end")
    assert rows == [("failed", "time limit exceeded")] * 3, (rows, worker.log(20_000))

    app.agent("ingest", "--count", "2", "--offset", "6010")  # the same worker process, the next batch
    rows = harness.wait_for(ended(5), timeout=90, what="the second batch to end")
    assert rows == [("failed", "time limit exceeded")] * 5, (rows, worker.log(20_000))
    assert app.report()["predictions"] == 0
    log = worker.log(200_000)
    assert "SoftTimeLimitExceeded" in log or "soft time limit" in log.lower(), log[-3000:]
    assert "Retry in" not in log  # a time-out is an outcome, not a transient fault


@pytest.fixture
def failing_database(monkeypatch, settings):
    """Scoring hits a database error every time (the claim and the release still work).

    Eager errors are not propagated, so each retry runs (eagerly) as the worker would run it.
    """
    from neopain_site.celery import app

    settings.NEOPAIN_FRAME_MAX_ATTEMPTS = 10
    monkeypatch.setattr(app.conf, "task_eager_propagates", False)

    def fail(**kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(worker, "_frames_score_batch", fail)


@pytest.fixture
def countdowns(monkeypatch):
    """Record each retry's countdown; jitter pinned to its ceiling so the back-off itself is visible."""
    import types

    import celery.utils.time

    recorded: list[int] = []
    monkeypatch.setattr(celery.utils.time, "random", types.SimpleNamespace(randrange=lambda ceiling: ceiling - 1))
    original = frame_process.retry

    def retry(*args, **kwargs):
        recorded.append(kwargs.get("countdown"))
        return original(*args, **kwargs)

    monkeypatch.setattr(frame_process, "retry", retry)
    return recorded


@pytest.mark.faults
@pytest.mark.django_db
def test_retries_back_off_and_stop_at_the_maximum(neonate, real_model, enqueued, failing_database, countdowns):
    frame, _ = services.frame_ingest(neonate=neonate, image_file=next(face_images(1, offset=6100)), uploaded_by=None)

    result = frame_process.apply(args=[frame.pk])

    assert result.state == "FAILURE" and isinstance(result.result, services.FramesRetry)
    maximum = RETRY_OPTIONS["max_retries"]
    assert len(countdowns) == maximum + 1  # the last call finds the retries spent and gives up
    assert countdowns[:maximum] == [2, 4, 8, 16, 32]
    assert all(later > earlier for earlier, later in zip(countdowns, countdowns[1:maximum]))
    frame.refresh_from_db()
    assert (frame.status, frame.attempts) == ("queued", maximum + 1)
    assert frame.reason == "retrying after OperationalError"  # the sweeper will publish it again


@pytest.mark.faults
@pytest.mark.django_db
def test_jittered_countdowns_stay_under_the_growing_ceiling(
    neonate, real_model, enqueued, failing_database, monkeypatch
):
    recorded: list[int] = []
    original = frame_process.retry
    monkeypatch.setattr(frame_process, "retry", lambda *a, **k: recorded.append(k["countdown"]) or original(*a, **k))
    frame, _ = services.frame_ingest(neonate=neonate, image_file=next(face_images(1, offset=6200)), uploaded_by=None)

    assert frame_process.apply(args=[frame.pk]).state == "FAILURE"
    assert len(recorded) == RETRY_OPTIONS["max_retries"] + 1
    assert all(0 <= c <= min(2 * 2**n, RETRY_OPTIONS["retry_backoff_max"]) for n, c in enumerate(recorded))


@pytest.mark.faults
@pytest.mark.django_db
def test_a_frame_claimed_too_often_is_failed_with_a_reason(neonate, real_model, enqueued, settings):
    settings.NEOPAIN_FRAME_MAX_ATTEMPTS = 5
    frame, _ = services.frame_ingest(neonate=neonate, image_file=next(face_images(1, offset=6300)), uploaded_by=None)
    Frame.objects.filter(pk=frame.pk).update(attempts=5)

    counts = services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert counts["failed"] == 1
    assert (frame.status, frame.reason) == ("failed", "gave up after 5 attempts")
