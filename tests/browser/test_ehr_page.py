"""In a real browser: the unit admin's EHR page shows what waits for the EHR and what failed (with the
error), and "Retry now" puts a failed message back in line (issue 18, push failures visible)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from ehr.models import OutboxMessage
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_the_unit_admin_sees_push_failures_and_retries_one(
    live_server, new_page, settings, unit, unit_admin, password, monkeypatch
):
    settings.NEOPAIN_FHIR_ENDPOINT = "https://ehr.example.org/fhir"
    monkeypatch.setattr("ehr.services.outbox._publish", lambda pk: None)  # no broker in this test
    now = timezone.now()
    OutboxMessage.objects.create(
        unit=unit,
        resource_type="Observation",
        resource_id="nips-41",
        reason="assessment",
        status="sent",
        attempts=1,
        sent_at=now,
        response_status=201,
        location="Observation/9001/_history/1",
    )
    OutboxMessage.objects.create(
        unit=unit,
        resource_type="Flag",
        resource_id="alert-7",
        reason="alert",
        status="pending",
        attempts=3,
        last_attempt_at=now,
        next_attempt_at=now + timezone.timedelta(seconds=8),
        last_error="ConnectionError: HTTPSConnectionPool(host='ehr.example.org', port=443): connection refused",
    )
    failed = OutboxMessage.objects.create(
        unit=unit,
        resource_type="Observation",
        resource_id="nips-42",
        reason="assessment",
        status="failed",
        attempts=1,
        last_attempt_at=now,
        response_status=422,
        last_error='HTTP 422: {"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invariant"}]}',
    )
    page = new_page()
    sign_in(page, live_server.url, unit_admin.username, password)

    page.get_by_role("link", name="EHR").click()
    expect(page.get_by_role("heading", name="EHR push (FHIR)")).to_be_visible()
    expect(page.get_by_text("connection refused")).to_be_visible()
    expect(page.get_by_text("HTTP 422")).to_be_visible()
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SCREENSHOTS / "ehr_push_failures.png"), full_page=True)

    page.get_by_role("button", name="Retry now").click()
    expect(page.get_by_text("Observation/nips-42 will be sent again.")).to_be_visible()
    failed.refresh_from_db()
    assert failed.status == "pending" and failed.attempts == 0
