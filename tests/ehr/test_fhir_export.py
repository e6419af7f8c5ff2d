"""FHIR Bulk Data $export: kick-off, polling, NDJSON files per type (each line a valid resource), _since,
cancel, and unit isolation."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from ehr import tasks
from ehr.models import BulkExport
from tests.ehr.conftest import auto_verdict, decided_assessment, fhir_validate
from tests.factories import AlertFactory

pytestmark = pytest.mark.django_db

ASYNC = {"HTTP_PREFER": "respond-async", "HTTP_ACCEPT": "application/fhir+json"}


@pytest.fixture
def run_inline(monkeypatch):
    """The export task runs when it is published (as a worker would pick it up)."""
    ran = []

    def publish(*, task_name, args):
        ran.append(task_name)
        getattr(tasks, task_name.rsplit(".", 1)[1])(*args)

    monkeypatch.setattr("ehr.services.exports.task_publish", publish)
    return ran


def _kick_off(client, query="", capture=None):
    with capture(execute=True):
        response = client.get(f"/fhir/$export{query}", **ASYNC)
    assert response.status_code == 202, response.content
    return response["Content-Location"]


def _ndjson(client, manifest) -> dict[str, list[dict]]:
    files = {}
    for output in manifest["output"]:
        response = client.get(output["url"])
        assert response.status_code == 200 and response["Content-Type"] == "application/fhir+ndjson"
        lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
        assert len(lines) == output["count"]
        files[output["type"]] = lines
    return files


def test_export_writes_ndjson_per_type_and_every_line_validates(
    client_for, unit_admin, nurse, neonate, model, run_inline, django_capture_on_commit_callbacks
):
    nips = decided_assessment(neonate=neonate, nurse=nurse, model=model)
    verdict = auto_verdict(neonate=neonate, model=model)
    AlertFactory(neonate=neonate, source="auto", prediction=verdict)
    client = client_for(unit_admin)

    status_url = _kick_off(client, capture=django_capture_on_commit_callbacks)
    response = client.get(status_url)

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    manifest = response.json()
    assert manifest["requiresAccessToken"] is True and manifest["transactionTime"].endswith("Z")
    files = _ndjson(client, manifest)
    assert set(files) == {"Patient", "Practitioner", "Device", "Observation", "Flag"}
    for lines in files.values():
        for resource in lines:
            fhir_validate(resource)
    assert {r["id"] for r in files["Observation"]} == {
        f"nips-{nips.pk}",
        f"ai-{nips.case.prediction_id}",
        f"ai-{verdict.pk}",
    }
    assert [r["identifier"][0]["value"] for r in files["Patient"]] == [neonate.mrn]


def test_since_exports_only_newer_observations_and_what_they_reference(
    client_for, unit_admin, nurse, neonate, model, run_inline, django_capture_on_commit_callbacks
):
    old = auto_verdict(neonate=neonate, model=model)
    old.created_at = timezone.now() - timedelta(days=2)
    old.save()
    new = auto_verdict(neonate=neonate, model=model)
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    client = client_for(unit_admin)

    manifest = client.get(_kick_off(client, f"?_since={since}", capture=django_capture_on_commit_callbacks)).json()
    files = _ndjson(client, manifest)

    assert [r["id"] for r in files["Observation"]] == [f"ai-{new.pk}"]
    assert [r["id"] for r in files["Patient"]] == [str(neonate.pk)]  # referenced by the new observation


def test_type_filter_and_polling_while_queued(
    client_for, unit_admin, neonate, model, monkeypatch, django_capture_on_commit_callbacks
):
    auto_verdict(neonate=neonate, model=model)
    monkeypatch.setattr("ehr.services.exports.task_publish", lambda **kw: None)  # the worker has not run yet
    client = client_for(unit_admin)
    status_url = _kick_off(client, "?_type=Observation", capture=django_capture_on_commit_callbacks)

    waiting = client.get(status_url)
    assert waiting.status_code == 202 and waiting["X-Progress"] == "queued"

    export = BulkExport.objects.get()
    tasks.bulk_export_run(str(export.pk))
    tasks.bulk_export_run(str(export.pk))  # a redelivered message: nothing happens twice
    manifest = client.get(status_url).json()
    assert [o["type"] for o in manifest["output"]] == ["Observation"]


def test_cancel_deletes_the_files(
    client_for, unit_admin, neonate, model, run_inline, django_capture_on_commit_callbacks
):
    auto_verdict(neonate=neonate, model=model)
    client = client_for(unit_admin)
    status_url = _kick_off(client, capture=django_capture_on_commit_callbacks)
    file_url = client.get(status_url).json()["output"][0]["url"]

    assert client.delete(status_url).status_code == 202
    assert client.get(status_url).status_code == 404
    assert client.get(file_url).status_code == 404


@pytest.mark.parametrize(
    ("query", "headers"),
    [("", {}), ("?_type=Encounter", ASYNC), ("?_outputFormat=text/csv", ASYNC), ("?_since=yesterday", ASYNC)],
    ids=["no-prefer", "bad-type", "bad-format", "bad-since"],
)
def test_bad_kick_offs_are_400_operation_outcomes(client_for, unit_admin, query, headers):
    response = client_for(unit_admin).get(f"/fhir/$export{query}", **headers)

    assert response.status_code == 400
    fhir_validate(response.json())


def test_another_units_admin_cannot_poll_or_download(
    client_for, unit_admin, other_unit_admin, neonate, model, run_inline, django_capture_on_commit_callbacks
):
    auto_verdict(neonate=neonate, model=model)
    client = client_for(unit_admin)
    status_url = _kick_off(client, capture=django_capture_on_commit_callbacks)
    file_url = client.get(status_url).json()["output"][0]["url"]
    other = client_for(other_unit_admin)

    assert other.get(status_url).status_code == 404
    assert other.get(file_url).status_code == 404
    own = client_for(other_unit_admin)
    own_status = _kick_off(own, capture=django_capture_on_commit_callbacks)
    south = _ndjson(own, own.get(own_status).json())
    assert "Observation" not in south and "Patient" not in south  # NICU South has no patient data
    assert [r["id"] for r in south["Practitioner"]] == [str(other_unit_admin.pk)]


def test_a_nurse_may_not_export(client_for, nurse):
    response = client_for(nurse).get("/fhir/$export", **ASYNC)

    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
