"""Issue 6, line 18: PostgreSQL stopped under a real server, with uploads in flight.

gunicorn and a Celery worker run against the private PostgreSQL and Redis while a camera keeps
uploading. The database is stopped (``pg_ctl stop -m fast``: open transactions are cut off) and
started again. During the outage every request gets a 503 with a generic JSON body (no stack
trace, no database details); afterwards the app recovers by itself, and nothing is half-written:
every stored image has its row and every row its image, every prediction its crop, every frame
exactly one prediction.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import OperationalError

from tests.factories import png_bytes
from tests.faults import harness
from tests.faults.agent import face_images
from tests.faults.test_redis_down import wait_until_processed
from tests.hardening.conftest import media_files
from triage import services
from triage.models import Frame, Prediction, TriageCase
from triage.services import predictions

LEAKS = (
    "Traceback",
    "psycopg",
    "OperationalError",
    "postgres",
    "5432",
    "connection to server",
    "SELECT",
    "triage_",
    'File "/',
)


class Uploader(threading.Thread):
    """A camera uploading a distinct frame every 0.2 s until stopped."""

    def __init__(self, base: str, token: str, mrn: str) -> None:
        super().__init__(daemon=True)
        self.base, self.token, self.mrn = base, token, mrn
        self.images = face_images(400, offset=3000)
        self.results: list[tuple[int, bytes]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                code, body, _ = harness.upload(self.base, self.token, self.mrn, next(self.images), timeout=30)
            except OSError as exc:  # a connection reset is the client's problem to retry, but record it
                code, body = -1, repr(exc).encode()
            self.results.append((code, body))
            time.sleep(0.2)


def assert_generic_503(code: int, body: bytes, headers: dict) -> None:
    assert code == 503, (code, body[:300])
    assert json.loads(body) == {"detail": "Service temporarily unavailable. Try again shortly."}
    assert not [word for word in LEAKS if word.lower() in body.decode().lower()]
    assert headers.get("Retry-After")


@pytest.mark.faults
@pytest.mark.slow
def test_a_database_outage_answers_503_writes_nothing_half_and_recovers_by_itself(fault_app):
    app = fault_app
    base = app.web()
    worker = app.worker()
    token, nurse, mrn = app.seed["device_token"], app.seed["nurse_token"], app.seed["mrn"]
    assert harness.http("GET", f"{base}/api/v1/frames/", token=token)[0] == 200

    uploader = Uploader(base, token, mrn)
    uploader.start()
    harness.wait_for(lambda: len(uploader.results) >= 5, timeout=60, what="uploads before the outage")

    app.pg.stop("fast")
    stopped = time.monotonic()
    outage = {
        "frames": harness.http("GET", f"{base}/api/v1/frames/", token=token),
        "cases": harness.http("GET", f"{base}/api/v1/cases/", token=nurse),
        "health": harness.http("GET", f"{base}/api/v1/health/"),
        "upload": harness.upload(base, token, mrn, png_bytes(seed=18)),
    }
    time.sleep(2)

    app.pg.start()
    restarted = time.monotonic()
    harness.wait_for(
        lambda: harness.http("GET", f"{base}/api/v1/frames/", token=token)[0] == 200,
        timeout=60,
        what="the API to answer again",
    )
    recovered = time.monotonic()
    time.sleep(1.5)
    uploader.halt.set()
    uploader.join(timeout=60)

    for code, body, headers in outage.values():
        assert_generic_503(code, body, headers)
    codes = [code for code, _ in uploader.results]
    print(
        f"\nuploads around the outage: {codes}; recovered {recovered - restarted:.1f}s after the restart "
        f"(outage {restarted - stopped:.1f}s)"
    )
    assert set(codes) <= {202, 503}, [(c, b[:200]) for c, b in uploader.results if c not in (202, 503)]
    assert 503 in codes and codes[-1] == 202
    accepted = {json.loads(body)["id"] for code, body in uploader.results if code == 202}

    wait_until_processed(app, worker, timeout=150)

    report = app.report()
    frame_rows = app.pg.query("SELECT id, image FROM triage_frame", app.dbname)
    crops = {row[0] for row in app.pg.query("SELECT crop FROM triage_prediction WHERE crop <> ''", app.dbname)}
    nurse_routed = app.pg.query(
        "SELECT count(*) FROM triage_prediction p LEFT JOIN triage_triagecase c ON c.prediction_id = p.id "
        "WHERE p.routed_to = 'nurse' AND c.id IS NULL",
        app.dbname,
    )[0][0]
    print(f"after the outage: {report}")
    assert accepted <= {pk for pk, _ in frame_rows}, "an upload answered 202 has no row"
    assert report["frames"] == len(accepted)
    assert (report["lost"], report["duplicated"]) == (0, 0), report
    assert report["statuses"] == {"done": report["frames"]}
    stored = {str(p.relative_to(app.media)) for p in media_files(app.media / "frames")}
    assert stored == {name for _, name in frame_rows}, "an image without its row, or a row without its image"
    assert {str(p.relative_to(app.media)) for p in media_files(app.media / "crops")} == crops
    assert nurse_routed == 0, "a prediction routed to a nurse has no case"


# --- the same guarantees, deterministically, in-process ------------------------------------------


@pytest.mark.faults
@pytest.mark.django_db
def test_the_middleware_answers_503_without_details_when_the_database_is_gone(client_for, nurse, monkeypatch):
    from triage import selectors

    def broken(**kwargs):
        raise OperationalError('connection to server at "10.0.0.5", port 5432 failed: Connection refused')

    monkeypatch.setattr(selectors, "frames_visible", broken)

    response = client_for(nurse).get("/api/v1/frames/")

    assert_generic_503(response.status_code, response.content, response.headers)


@pytest.mark.faults
@pytest.mark.django_db
def test_a_prediction_that_cannot_be_written_leaves_no_crop_behind(
    neonate, real_model, media_root, enqueued, monkeypatch
):
    """The crop is written before the prediction row; if the rows fail, the file must go too."""
    frame, _ = services.frame_ingest(neonate=neonate, image_file=next(face_images(1, offset=4000)), uploaded_by=None)

    def fail(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    # The batch writes its cases in one statement; a lone frame (the fallback) creates its own.
    monkeypatch.setattr(TriageCase.objects, "bulk_create", fail)
    monkeypatch.setattr(TriageCase, "save", fail)
    monkeypatch.setattr(predictions, "alert_raise", fail)

    with pytest.raises(services.FramesRetry):
        services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert frame.status == "queued" and "OperationalError" in frame.reason  # released for a retry
    assert Prediction.objects.count() == 0
    assert media_files(media_root / "crops") == []


@pytest.mark.faults
@pytest.mark.django_db
def test_an_upload_whose_row_cannot_be_written_leaves_no_image_behind(neonate, media_root, enqueued, monkeypatch):
    monkeypatch.setattr(Frame, "save", lambda *a, **k: (_ for _ in ()).throw(OperationalError("gone")))

    with pytest.raises(OperationalError):
        services.frame_ingest(neonate=neonate, image_file=png_bytes(seed=181), uploaded_by=None)

    assert media_files(media_root) == [] and enqueued == []
