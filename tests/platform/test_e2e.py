"""End to end: a camera uploads over HTTP, a real Celery worker process scores it, the verdict is routed.

Runs on whatever the settings configure: the embedded default (SQLite file + SQLAlchemy broker)
or PostgreSQL + Redis (DATABASE_URL / REDIS_URL). The worker is a separate process, so the test
database must be one it can open: a file on SQLite (see settings_test), test_neopain on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import django.test.testcases as _django_testcases
import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.factories import DeviceFactory, NeonateFactory, UnitFactory, UserFactory, api_token_for
from tests.faults import harness
from tests.platform.conftest import astronaut_jpeg
from triage import services
from triage.models import Alert, Prediction, Role, TriageCase

BASE_DIR = Path(django_settings.BASE_DIR)


def _no_media_handler(application):
    """NeoPain has no public media (MEDIA_URL is None), which the live server's media wrapper cannot
    parse; patient images are served by authorised views only. Same patch as tests/browser."""
    return application


_django_testcases._MediaFilesHandler = _no_media_handler
DEADLINE_SECONDS = 120


def database_url_for_worker() -> str:
    """The URL of the database this test process is using right now (the test database)."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    if connection.vendor == "postgresql":
        auth = quote(params["USER"] or "", safe="")
        if params.get("PASSWORD"):
            auth += ":" + quote(params["PASSWORD"], safe="")
        host = params.get("HOST") or "127.0.0.1"
        port = params.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{params['NAME']}"
    raise AssertionError(f"unsupported database {connection.vendor}")


def purge_queues() -> None:
    """Drop messages left by earlier tests (ids they name may exist again in this database)."""
    from neopain_site.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in ("inference", "clips", "default"):
            try:
                channel.queue_purge(queue)
            except Exception:  # a queue that was never declared has nothing to purge
                pass


def http(method: str, url: str, *, token: str, body: bytes | None = None, content_type: str | None = None):
    """(status, JSON body) of one request with the token (the fault suite's client, decoded)."""
    status, data, _ = harness.http(method, url, token=token, body=body, content_type=content_type)
    return status, json.loads(data or b"{}")


@pytest.fixture
def celery_worker_process(tmp_path, settings):
    """A real ``celery worker`` subprocess on this test's database, media folder and broker."""
    purge_queues()
    media_root = Path(settings.STORAGES["default"]["OPTIONS"]["location"])
    worker_data_dir = media_root.parent  # the worker's NEOPAIN_DATA_DIR/media is this test's media root
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "NEOPAIN_"))},
        "DJANGO_SETTINGS_MODULE": "neopain_site.settings",
        "NEOPAIN_ENV": "test",
        "NEOPAIN_DATA_DIR": str(worker_data_dir),
        "DATABASE_URL": database_url_for_worker(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "NEOPAIN_SALIENCY": "1",
        "PYTHONUNBUFFERED": "1",
        # The worker's own metrics endpoint (issue 18): read after the frame is scored.
        "NEOPAIN_WORKER_METRICS_PORT": str(metrics_port := free_port()),
        "NEOPAIN_METRICS_TOKEN": E2E_METRICS_TOKEN,
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "neopain_site",
                "worker",
                "-Q",
                "inference,clips,default",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
                "--hostname",
                f"e2e-{uuid.uuid4().hex[:8]}@%h",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.log_path = log_path
    process.metrics_port = metrics_port
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


E2E_METRICS_TOKEN = "e2e-metrics-token-0123456789"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker_metrics(process) -> str:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{process.metrics_port}/metrics", headers={"Authorization": f"Bearer {E2E_METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read().decode()


def worker_log(process) -> str:
    return Path(process.log_path).read_text(errors="replace")[-4000:]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_an_upload_over_http_is_scored_by_a_real_worker_and_routed(
    live_server, celery_worker_process, bootstrap_bundle, tmp_path
):
    unit = UnitFactory(name="NICU E2E", code="e2e")
    # One frame: every automatic pain verdict alerts (the default rule wants 2 of the last 3).
    services.unit_settings_update(unit=unit, actor=None, changes={"alert_rule_k": 1, "alert_rule_n": 1})
    neonate = NeonateFactory(mrn="E2E-0001", unit=unit)
    camera = DeviceFactory(unit=unit, user=UserFactory(username="e2e-camera", role=Role.DEVICE, unit=unit))
    token = api_token_for(camera.user)
    bundle = tmp_path / "bootstrap.pt"
    shutil.copyfile(bootstrap_bundle, bundle)
    model = services.model_version_register(bundle_path=bundle, status="active")
    image = astronaut_jpeg()

    body, content_type = harness.multipart({"neonate": neonate.mrn}, {"image": ("bed1.jpg", image, "image/jpeg")})
    status, upload = http(
        "POST", f"{live_server.url}/api/v1/frames/", token=token, body=body, content_type=content_type
    )

    assert status == 202, upload
    assert upload["status"] == "queued"
    deadline = time.monotonic() + DEADLINE_SECONDS
    frame = upload
    while time.monotonic() < deadline:
        status, frame = http("GET", f"{live_server.url}/api/v1/frames/{upload['id']}/", token=token)
        assert status == 200, frame
        if frame["status"] not in ("queued", "processing"):
            break
        assert celery_worker_process.poll() is None, worker_log(celery_worker_process)
        time.sleep(0.5)
    assert frame["status"] == "done", (
        f"frame ended {frame['status']!r} ({frame.get('reason')})\n{worker_log(celery_worker_process)}"
    )

    prediction = frame["prediction"]
    assert prediction["model_version"] == model.label
    assert prediction["weights_sha256"] == model.sha256
    assert prediction["frame_sha256"] == hashlib.sha256(image).hexdigest() == frame["frame_sha256"]
    assert prediction["threshold"] == pytest.approx(0.55)
    assert prediction["routed_to"] in ("auto", "nurse")
    assert prediction["label"] in ("pain", "nonpain")
    assert len(prediction["box"]) == 4
    row = Prediction.objects.get(frame_id=upload["id"])
    if prediction["routed_to"] == "nurse":
        assert TriageCase.objects.get(prediction=row).status == "open"
        assert prediction["case"]["status"] == "open"
    else:
        assert prediction["confidence"] >= prediction["threshold"]
        assert Alert.objects.filter(prediction=row).exists() == (prediction["label"] == "pain")
    assert "frame_process" in worker_log(celery_worker_process)
    scraped = worker_metrics(celery_worker_process)  # the worker's own figures moved with the frame
    assert f'neopain_inference_batch_size_sum{{model_version="{model.label}"}} 1.0' in scraped, scraped[-2000:]
    assert 'neopain_worker_frames_total{outcome="done"} 1.0' in scraped
