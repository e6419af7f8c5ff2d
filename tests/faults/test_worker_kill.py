"""Issue 6, line 15 (and the broker half of 16): ``kill -9`` workers in the middle of a batch of 1,000 frames.

Real processes on a private PostgreSQL and Redis: 1,000 distinct face frames are ingested (each
publishes ``frame_process`` after commit; 50 are published a second time, as a redelivering broker
would), a prefork worker scores them with a real model (RetinaFace + PainNet), and mid-batch:

1. the pool process executing the batch is killed with SIGKILL (the worker's parent survives,
   forks a new child, and ``reject_on_worker_lost`` puts the message back);
2. later the whole worker (parent and child) is killed with SIGKILL, and a new worker started.

The sweeper (``manage.py sweep_frames``, what beat runs every minute) re-queues frames left in
``processing`` by the dead workers. At the end every frame must have exactly one prediction.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults import harness

pytestmark = [pytest.mark.faults, pytest.mark.slow]

FRAMES = 1000
STUCK_SECONDS = 8  # the sweeper's threshold here (production: NEOPAIN_STUCK_FRAME_SECONDS=600)
DEADLINE_SECONDS = 300


def _processing(app) -> int:
    return app.pg.query("SELECT count(*) FROM triage_frame WHERE status = 'processing'", app.dbname)[0][0]


def _predictions(app) -> int:
    return app.pg.query("SELECT count(*) FROM triage_prediction", app.dbname)[0][0]


def _wait_mid_batch(app, worker, *, at_least: int, timeout: float) -> tuple[int, int]:
    """Wait until ``at_least`` predictions exist and a batch is claimed but not yet recorded.

    Returns (predictions, frames in processing) as seen just before the caller kills.
    """

    def ready():
        assert worker.alive(), worker.log()
        done = _predictions(app)
        if done < at_least:
            return None
        in_flight = _processing(app)
        return (done, in_flight) if in_flight >= 8 else None

    return harness.wait_for(ready, timeout=timeout, interval=0.02, what=f"{at_least} predictions mid-batch")


def _sweep_when_stalled(app, worker, *, deadline: float) -> int:
    """Run the sweeper (as beat would) whenever no prediction has landed for a while; returns how often."""
    sweeps, last, last_change = 0, -1, time.monotonic()
    while app.unfinished() and time.monotonic() < deadline:
        assert worker.alive(), worker.log()
        done = _predictions(app)
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > 3:
            app.sweep(STUCK_SECONDS)
            sweeps += 1
            last_change = time.monotonic()
        time.sleep(0.5)
    return sweeps


def test_kill_9_of_workers_mid_batch_loses_and_duplicates_no_frame(fault_app, record_property):
    app = fault_app
    app.env["NEOPAIN_STUCK_FRAME_SECONDS"] = str(STUCK_SECONDS)
    started = time.monotonic()

    ingest = app.agent("ingest", "--count", str(FRAMES), "--republish", "50", timeout=300)
    assert ingest["count"] == FRAMES
    ingested = time.monotonic()

    first = app.worker("worker-1")
    worker_up = time.monotonic()
    at_child_kill, in_flight_child = _wait_mid_batch(app, first, at_least=200, timeout=180)
    children = first.children()
    assert children, "the prefork worker has no pool process"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    child_killed = time.monotonic()

    at_group_kill, in_flight_group = _wait_mid_batch(app, first, at_least=at_child_kill + 250, timeout=180)
    first.kill9()
    killed = time.monotonic()

    second = app.worker("worker-2")
    sweeps = _sweep_when_stalled(app, second, deadline=time.monotonic() + DEADLINE_SECONDS)
    finished = time.monotonic()

    report = app.report()
    figures = {
        "frames": report["frames"],
        "predictions": report["predictions"],
        "lost": report["lost"],
        "duplicated": report["duplicated"],
        "statuses": report["statuses"],
        "killed_child_after": at_child_kill,
        "in_flight_at_child_kill": in_flight_child,
        "killed_worker_after": at_group_kill,
        "in_flight_at_worker_kill": in_flight_group,
        "sweeps": sweeps,
        "ingest_s": round(ingested - started, 1),
        "first_worker_start_s": round(worker_up - ingested, 1),
        "to_child_kill_s": round(child_killed - worker_up, 1),
        "to_worker_kill_s": round(killed - child_killed, 1),
        "recovery_s": round(finished - killed, 1),
        "total_s": round(finished - started, 1),
    }
    for key, value in figures.items():
        record_property(key, value)
    print(f"\nworker kill -9 figures: {figures}")

    assert app.unfinished() == 0, f"frames still unfinished after {DEADLINE_SECONDS}s: {figures}\n{app.logs()}"
    assert report["frames"] == FRAMES
    assert (report["lost"], report["duplicated"]) == (0, 0), figures
    assert report["statuses"] == {"done": FRAMES}, figures
    assert report["predictions"] == FRAMES
    assert "WorkerLostError" in first.log(2_000_000) or "lost" in first.log(2_000_000).lower()
