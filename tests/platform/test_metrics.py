"""Prometheus metrics (issue 18, item 4): who may scrape, what a scrape says, and that its figures move
when frames are uploaded and processed; the worker's own endpoint."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import png_bytes
from triage import services
from triage.models import Frame

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def scrape(settings):
    settings.NEOPAIN_METRICS_TOKEN = TOKEN
    client = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    def read() -> dict[tuple[str, tuple], float]:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content[:300]
        assert response["Content-Type"].startswith("text/plain; version=0.0.4")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples
        }

    return read


def value(figures, name, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


# --- who may scrape --------------------------------------------------------------------------------


def test_nobody_may_scrape_until_a_token_or_an_address_is_configured(settings):
    settings.NEOPAIN_METRICS_TOKEN, settings.NEOPAIN_METRICS_ALLOWED_IPS = "", []

    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 403 and b"NEOPAIN_METRICS_TOKEN" in response.content


@pytest.mark.parametrize(
    ("header", "address", "expected"),
    [
        (f"Bearer {TOKEN}", "203.0.113.9", 200),
        (f"bearer {TOKEN}", "203.0.113.9", 200),
        ("Bearer wrong-token-0123456789abcdef", "203.0.113.9", 403),
        (f"Token {TOKEN}", "203.0.113.9", 403),
        ("", "203.0.113.9", 403),
        ("", "10.1.2.3", 200),  # inside the allowed network
        ("", "192.0.2.7", 200),  # the allowed address
        ("", "192.0.2.8", 403),
    ],
)
def test_a_bearer_token_or_an_allowed_address_may_scrape(settings, header, address, expected):
    settings.NEOPAIN_METRICS_TOKEN = TOKEN
    settings.NEOPAIN_METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.0.2.7"]

    response = Client(REMOTE_ADDR=address).get("/metrics", HTTP_AUTHORIZATION=header)

    assert response.status_code == expected


def test_a_session_or_an_api_token_is_not_a_way_in(settings, browser_for, client_for, unit_admin):
    settings.NEOPAIN_METRICS_TOKEN, settings.NEOPAIN_METRICS_ALLOWED_IPS = TOKEN, []

    assert browser_for(unit_admin).get("/metrics").status_code == 403
    assert client_for(unit_admin).get("/metrics").status_code == 403


# --- what a scrape says, and that it moves -------------------------------------------------------------


def test_a_scrape_has_request_metrics_and_neopains_own_figures(scrape, unit, other_unit):
    Client().get("/login/")  # one request through django-prometheus' middleware

    figures = scrape()

    assert any(name == "django_http_requests_total_by_method_total" for name, _ in figures)
    for code in ("north", "south"):
        assert value(figures, "neopain_frames", unit=code, status="queued") == 0
        assert ("neopain_cases_open", (("unit", code),)) in figures
        assert ("neopain_alerts_raised_total", (("source", "auto"), ("unit", code))) in figures
    assert value(figures, "neopain_database_up") == 1
    assert value(figures, "neopain_broker_up") == 1
    assert ("neopain_queue_depth", (("queue", "inference"),)) in figures


def test_the_figures_move_when_frames_are_uploaded_and_processed(
    scrape, client_for, device, neonate, active_model, fake_pipeline, django_capture_on_commit_callbacks
):
    north = neonate.unit.code
    model = active_model.label
    before = scrape()

    with django_capture_on_commit_callbacks():  # the broker publish: see the queue-depth test below
        for seed in range(3):
            image = SimpleUploadedFile("f.png", png_bytes(seed=700 + seed), content_type="image/png")
            response = client_for(device.user).post("/api/v1/frames/", {"neonate": neonate.mrn, "image": image})
            assert response.status_code == 202
    queued = scrape()

    fake_pipeline.p_pain = 0.52  # below the 0.55 threshold: each becomes a nurse case
    services.frames_process(frame_ids=list(Frame.objects.values_list("pk", flat=True)))
    after = scrape()

    assert (
        value(queued, "neopain_frames_ingested_total", unit=north)
        - value(before, "neopain_frames_ingested_total", unit=north)
        == 3
    )
    assert value(queued, "neopain_frames", unit=north, status="queued") == 3
    assert value(after, "neopain_frames", unit=north, status="queued") == 0
    assert value(after, "neopain_frames", unit=north, status="done") == 3
    assert value(after, "neopain_predictions_total", unit=north, model_version=model, routed_to="nurse") == 3
    assert value(after, "neopain_routing_auto_share", unit=north, model_version=model) == 0.0
    assert value(after, "neopain_cases_open", unit=north) == 3
    assert value(after, "neopain_cases_open_oldest_age_seconds", unit=north) >= 0
    assert (
        value(after, "neopain_inference_seconds_count", model_version=model)
        - value(before, "neopain_inference_seconds_count", model_version=model)
        == 1
    )  # one batch of three
    assert (
        value(after, "neopain_inference_batch_size_sum", model_version=model)
        - value(before, "neopain_inference_batch_size_sum", model_version=model)
        == 3
    )
    assert (
        value(after, "neopain_worker_frames_total", outcome="done")
        - value(before, "neopain_worker_frames_total", outcome="done")
        == 3
    )


def test_queue_depth_counts_the_messages_waiting_in_the_broker(scrape, settings):
    from neopain_site.celery import app

    queue = "metrics-test"
    settings.CELERY_TASK_ROUTES = {**settings.CELERY_TASK_ROUTES, "tests.metrics_probe": {"queue": queue}}
    assert value(scrape(), "neopain_queue_depth", queue=queue) == 0
    try:
        for n in range(2):
            app.send_task("tests.metrics_probe", args=[n], queue=queue)
        assert value(scrape(), "neopain_queue_depth", queue=queue) == 2
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)
    assert value(scrape(), "neopain_queue_depth", queue=queue) == 0


def test_the_database_figures_give_way_to_database_up_0_when_it_is_down(scrape, monkeypatch):
    from django.db import OperationalError

    def down(self):
        raise OperationalError("connection refused")

    monkeypatch.setattr("triage.metrics.figures.NeoPainCollector.collect", down)

    figures = scrape()

    assert value(figures, "neopain_database_up") == 0
    assert not any(name.startswith("neopain_frames") for name, _ in figures)


# --- the worker's own endpoint ----------------------------------------------------------------------


def test_the_worker_serves_its_own_figures_behind_the_same_token():
    from triage.metrics import batch_observe, worker_metrics_serve

    server = worker_metrics_serve(address="127.0.0.1", port=0, token=TOKEN, allowed_ips=[])
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        batch_observe(model_version="worker-test v1", seconds=0.2, size=4)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            body = answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()

    assert refused.value.code == 403
    assert 'neopain_inference_batch_size_sum{model_version="worker-test v1"} 4.0' in body
    assert 'neopain_inference_seconds_count{model_version="worker-test v1"} 1.0' in body
    assert "neopain_frames_ingested" not in body  # the database figures are the web's alone


def test_in_multiprocess_mode_a_scrape_adds_up_every_processs_figures(tmp_path):
    """What a prefork worker (or gunicorn with PROMETHEUS_MULTIPROC_DIR) relies on: two processes
    observe a batch each; a third process's scrape sees both."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    observe = "from triage.metrics.instruments import batch_observe; batch_observe(model_version='mp v1', seconds=0.1, size=5)"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", observe], env=env, check=True, timeout=60)
    read = "from triage.metrics.exposition import metrics_payload; print(metrics_payload(with_database=False).decode())"
    body = subprocess.run(
        [sys.executable, "-c", read], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout

    assert 'neopain_inference_batch_size_sum{model_version="mp v1"} 10.0' in body
    assert 'neopain_inference_seconds_count{model_version="mp v1"} 2.0' in body


def test_every_metric_the_dashboard_and_the_sample_rules_use_is_exported(scrape, unit):
    from tests.factories import PredictionFactory

    """docs/grafana-dashboard.json and docs/prometheus.yml name only metrics a scrape really has."""
    import json
    import re
    from pathlib import Path

    from django.conf import settings as django_settings

    from triage.metrics import batch_observe, frames_outcome_count

    docs = Path(django_settings.BASE_DIR) / "docs"
    Client().get("/login/")
    batch_observe(model_version="doc v1", seconds=0.1, size=1)
    frames_outcome_count({"done": 1})
    PredictionFactory()  # the per-prediction figures have samples only once there is one
    exported = {name for name, _ in scrape()}
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text())
    used = {t["expr"] for p in dashboard["panels"] for t in p["targets"]}
    text = " ".join(used) + (docs / "prometheus.yml").read_text()
    names = set(re.findall(r"\b((?:neopain|django)_[a-z_]+)\b", text))

    assert names and names <= exported, sorted(names - exported)


def test_a_short_metrics_token_stops_the_start_and_one_from_a_file_is_read(tmp_path):
    from tests.platform.test_settings import run_settings

    short = run_settings({"NEOPAIN_METRICS_TOKEN": "abc"})
    secret = tmp_path / "metrics-token"
    secret.write_text(TOKEN + "\n")
    read = run_settings(
        {"NEOPAIN_METRICS_TOKEN_FILE": str(secret)},
        "import django; django.setup(); from django.conf import settings; print(settings.NEOPAIN_METRICS_TOKEN)",
    )

    assert short.returncode != 0 and "NEOPAIN_METRICS_TOKEN must be at least 16 characters" in short.stderr
    assert read.stdout.strip().endswith(TOKEN)
