"""One frame upload costs a fixed, small number of SQL statements (issue 7, goal 3).

Timings live in ``scripts/bench_ingest.py`` (never in tests); here the round trips an upload
makes, which a regression (a second look-up of the token's camera, a duplicate check before the
insert, a neonate join the upload does not use) would raise: the token with its user and camera
in one query, the neonate, the insert, and the camera's ``last_seen_at`` at most once a minute (the
token's ``last_used_at`` likewise: the clients here use a token already used this minute).
Also the cheaper paths' answers: the shared serializer's 202 body, a duplicate caught at the insert.
"""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from tests.factories import DeviceFactory, NeonateFactory, UserFactory, api_token_for, png_bytes
from triage.apis import FrameOutputSerializer
from triage.models import ApiToken, Device, Frame, Role

URL = "/api/v1/frames/"


@pytest.fixture
def client_for():
    """An API client whose token was used this minute: its ``last_used_at`` is not written again."""

    def make(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_for(user, last_used_at=timezone.now())}")
        return client

    return make


def _upload(client, *, mrn: str, data: bytes):
    image = SimpleUploadedFile("face.png", data, content_type="image/png")
    return client.post(URL, {"neonate": mrn, "image": image}, format="multipart")


def _statements(queries) -> list[str]:
    """The SQL an upload sent, without the transaction control the test database adds around it."""
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")
    return [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith(control)]


def _media_files(settings) -> list:
    from pathlib import Path

    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def neonate(unit):
    return NeonateFactory(mrn="MRN-PERF-1", unit=unit)


@pytest.mark.django_db
def test_a_camera_upload_reads_token_user_and_camera_in_one_query_then_inserts(
    client_for, device, neonate, django_capture_on_commit_callbacks
):
    client = client_for(device.user)
    with CaptureQueriesContext(connection) as first, django_capture_on_commit_callbacks() as callbacks:
        response = _upload(client, mrn=neonate.mrn, data=png_bytes(seed=1))
    assert response.status_code == 202, response.json()
    assert len(callbacks) == 1  # the broker publish, after commit

    statements = _statements(first.captured_queries)
    assert len(statements) == 4, statements
    token_query, neonate_query, insert, seen = statements
    assert '"triage_apitoken"' in token_query and '"triage_device"' in token_query
    assert neonate_query.startswith("SELECT") and '"triage_neonate"' in neonate_query
    assert "JOIN" not in neonate_query and "ORDER BY" not in neonate_query
    assert insert.startswith("INSERT INTO") and '"triage_frame"' in insert
    assert seen.startswith("UPDATE") and '"triage_device"' in seen  # first upload: last_seen_at

    # Within the minute the camera row is not written again: three statements in all.
    with CaptureQueriesContext(connection) as second, django_capture_on_commit_callbacks():
        assert _upload(client, mrn=neonate.mrn, data=png_bytes(seed=2)).status_code == 202
    assert len(_statements(second.captured_queries)) == 3, _statements(second.captured_queries)
    assert Device.objects.get(pk=device.pk).last_seen_at is not None


@pytest.mark.django_db
def test_a_nurse_upload_costs_three_statements_too(client_for, nurse, neonate, django_capture_on_commit_callbacks):
    client = client_for(nurse)
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks():
        response = _upload(client, mrn=neonate.mrn, data=png_bytes(seed=3))
    assert response.status_code == 202, response.json()
    assert len(_statements(queries.captured_queries)) == 3, _statements(queries.captured_queries)
    frame = Frame.objects.get(pk=response.json()["id"])
    assert frame.device is None and frame.uploaded_by == nurse


@pytest.mark.django_db
def test_the_202_body_is_the_frame_serializers_body(client_for, device, neonate, django_capture_on_commit_callbacks):
    data = png_bytes(seed=4)
    with django_capture_on_commit_callbacks():
        response = _upload(client_for(device.user), mrn=neonate.mrn, data=data)
    frame = Frame.objects.select_related("neonate").get(pk=response.json()["id"])

    expected = {**FrameOutputSerializer(frame, context={"just_queued": True}).data, "duplicate": False}
    assert response.content == JSONRenderer().render(expected)
    body = response.json()
    assert body["frame_sha256"] == hashlib.sha256(data).hexdigest() and body["prediction"] is None
    assert response["Location"] == f"/api/v1/frames/{frame.pk}/"


@pytest.mark.django_db
def test_a_camera_whose_row_is_inactive_is_refused_without_a_second_query(client_for, device, neonate):
    Device.objects.filter(pk=device.pk).update(active=False)
    client = client_for(device.user)
    with CaptureQueriesContext(connection) as queries:
        response = _upload(client, mrn=neonate.mrn, data=png_bytes(seed=5))
    assert response.status_code == 403
    assert len(_statements(queries.captured_queries)) == 1
    assert Frame.objects.count() == 0


@pytest.mark.django_db
def test_a_device_account_without_a_camera_row_is_refused(client_for, unit, neonate):
    orphan = UserFactory(username="cam-without-row", role=Role.DEVICE, unit=unit)
    response = _upload(client_for(orphan), mrn=neonate.mrn, data=png_bytes(seed=6))
    assert response.status_code == 403
    assert Frame.objects.count() == 0


@pytest.mark.django_db
def test_an_inactive_users_token_is_refused(client_for, unit, neonate):
    camera = DeviceFactory(unit=unit)
    client = client_for(camera.user)
    camera.user.is_active = False
    camera.user.save(update_fields=["is_active"])
    response = _upload(client, mrn=neonate.mrn, data=png_bytes(seed=7))
    assert response.status_code == 401
    assert Frame.objects.count() == 0


# transaction=True: the upload's atomic block is the outermost transaction, as under gunicorn, so a
# duplicate's failed INSERT aborts a real transaction (PostgreSQL) before the existing frame is read.
@pytest.mark.django_db(transaction=True)
def test_a_duplicate_caught_at_the_insert_answers_200_with_the_stored_frame_and_leaves_no_file(
    client_for, device, neonate, settings, monkeypatch
):
    from triage import tasks

    published = []
    monkeypatch.setattr(tasks.frame_process, "apply_async", lambda args=None, **options: published.append(args))
    client = client_for(device.user)
    data = png_bytes(seed=8)

    first = _upload(client, mrn=neonate.mrn, data=data)
    second = _upload(client, mrn=neonate.mrn, data=data)

    assert first.status_code == 202 and second.status_code == 200, second.json()
    assert second.json()["id"] == first.json()["id"] and second.json()["duplicate"] is True
    assert second["Location"] == f"/api/v1/frames/{first.json()['id']}/"
    assert Frame.objects.count() == 1
    assert len(_media_files(settings)) == 1  # the duplicate's file was removed
    assert published == [[first.json()["id"]]]  # one broker message, for the stored frame only
    # The connection is usable after the failed insert: the next upload is accepted.
    third = _upload(client, mrn=neonate.mrn, data=png_bytes(seed=9))
    assert third.status_code == 202 and Frame.objects.count() == 2 and len(_media_files(settings)) == 2


@pytest.mark.django_db
def test_a_tokens_first_use_in_a_minute_writes_last_used_once(device, neonate, django_capture_on_commit_callbacks):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_for(device.user)}")
    with CaptureQueriesContext(connection) as first, django_capture_on_commit_callbacks():
        assert _upload(client, mrn=neonate.mrn, data=png_bytes(seed=40)).status_code == 202
    with CaptureQueriesContext(connection) as second, django_capture_on_commit_callbacks():
        assert _upload(client, mrn=neonate.mrn, data=png_bytes(seed=41)).status_code == 202

    token_writes = [q for q in _statements(first.captured_queries) if q.startswith("UPDATE") and "apitoken" in q]
    assert len(token_writes) == 1 and ApiToken.objects.get(user=device.user).last_used_at is not None
    assert not [q for q in _statements(second.captured_queries) if "apitoken" in q and q.startswith("UPDATE")]
