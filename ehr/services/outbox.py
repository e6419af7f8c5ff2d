"""Push to the EHR: an outbox row per final assessment and alert, written in the deciding transaction,
POSTed by a Celery task with backoff until the EHR has it.

Nothing is lost: the row commits with the decision, and a due row is retried (task retries, and the
every-minute sweep for anything a broker outage dropped) until the EHR answers 2xx. Nothing is sent
twice: a row is claimed before its POST (a lease: two workers never send one row at once), marked sent
after a 2xx and never sent again; and each POST is a FHIR conditional create (``If-None-Exist:
identifier=...``), so a POST whose answer was lost creates nothing new when it is repeated.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ehr import resources, selectors
from ehr.models import OutboxMessage
from triage.models import Alert, TriageCase
from triage.services import audit_record
from triage.services.enqueue import task_publish

logger = logging.getLogger("neopain.fhir")

DELIVER = "ehr.tasks.outbox_deliver"
CLAIM_SECONDS = 120
BACKOFF_MAX_SECONDS = 3600


def push_enabled(unit_code: str) -> bool:
    if not settings.NEOPAIN_FHIR_ENDPOINT:
        return False
    return not settings.NEOPAIN_FHIR_PUSH_UNITS or unit_code in settings.NEOPAIN_FHIR_PUSH_UNITS


def _publish(message_id: int) -> None:
    try:
        task_publish(task_name=DELIVER, args=[message_id])
    except Exception as exc:  # broker down: the row stays due and the sweep publishes it again
        logger.warning("broker unavailable, outbox %s waits for the sweep: %s: %s", message_id, type(exc).__name__, exc)


def _queue(*, unit, resource_type: str, resource_id: str, reason: str) -> OutboxMessage | None:
    """Add one row (a second call for the same resource is a no-op); publish it after commit."""
    try:
        with transaction.atomic():
            message = OutboxMessage.objects.create(
                unit=unit, resource_type=resource_type, resource_id=resource_id, reason=reason
            )
    except IntegrityError:
        return None
    transaction.on_commit(lambda: _publish(message.pk))
    return message


def outbox_queue_case(*, case: TriageCase) -> list[OutboxMessage]:
    """A decided case: each of its NIPS scores (the final assessment, and a blind second one)."""
    if case.status != TriageCase.Status.DECIDED or not push_enabled(case.unit.code):
        return []
    queued = []
    for assessment_id in case.assessments.order_by("pk").values_list("pk", flat=True):
        message = _queue(
            unit=case.unit, resource_type="Observation", resource_id=f"nips-{assessment_id}", reason="assessment"
        )
        if message:
            queued.append(message)
    return queued


def outbox_queue_alert(*, alert: Alert) -> list[OutboxMessage]:
    """An alert: the Flag, and for an automatic one the model's verdict Observation that raised it."""
    if not push_enabled(alert.unit.code):
        return []
    queued = []
    if alert.source == Alert.Source.AUTO and alert.prediction_id:
        queued.append(
            _queue(
                unit=alert.unit, resource_type="Observation", resource_id=f"ai-{alert.prediction_id}", reason="alert"
            )
        )
    queued.append(_queue(unit=alert.unit, resource_type="Flag", resource_id=f"alert-{alert.pk}", reason="alert"))
    return [message for message in queued if message]


def _resource(message: OutboxMessage) -> dict | None:
    if message.resource_type == "Observation":
        row = selectors.observation_row(unit_id=message.unit_id, resource_id=message.resource_id)
        if row is None:
            return None
        return (
            resources.nips_observation(row)
            if message.resource_id.startswith("nips-")
            else resources.ai_observation(row)
        )
    if message.resource_type == "Flag":
        alert = selectors.alerts(unit_id=message.unit_id).filter(pk=message.resource_id.removeprefix("alert-")).first()
        return resources.alert_flag(alert) if alert else None
    return None


def _claim(message_id: int, now) -> bool:
    due = Q(status=OutboxMessage.Status.PENDING, next_attempt_at__lte=now) & (
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )
    return bool(
        OutboxMessage.objects.filter(due, pk=message_id).update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
    )


def backoff_seconds(attempts: int) -> int:
    """2, 4, 8 ... seconds after each failed attempt, at most an hour."""
    return min(BACKOFF_MAX_SECONDS, 2 ** max(1, attempts))


def outbox_deliver(*, message_id: int) -> str:
    """POST one due message. Returns ``sent``, ``retry``, ``failed`` or ``skipped`` (not due, or claimed)."""
    now = timezone.now()
    if not _claim(message_id, now):
        return "skipped"
    message = OutboxMessage.objects.get(pk=message_id)
    resource = _resource(message)
    if resource is None:
        OutboxMessage.objects.filter(pk=message_id).update(
            status=OutboxMessage.Status.FAILED, claimed_until=None, last_error="The resource no longer exists."
        )
        return "failed"
    identifier = resource["identifier"][0]
    headers = {
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        "If-None-Exist": f"identifier={identifier['system']}|{identifier['value']}",
    }
    if settings.NEOPAIN_FHIR_TOKEN:
        headers["Authorization"] = f"Bearer {settings.NEOPAIN_FHIR_TOKEN}"
    url = f"{settings.NEOPAIN_FHIR_ENDPOINT.rstrip('/')}/{message.resource_type}"
    status, error, location = None, "", ""
    try:
        response = requests.post(
            url,
            data=json.dumps(resources.for_push(resource)),
            headers=headers,
            timeout=settings.NEOPAIN_FHIR_TIMEOUT_SECONDS,
        )
        status, location = response.status_code, response.headers.get("Location", "")[:500]
        if not 200 <= status < 300:
            error = f"HTTP {status}: {response.text[:500]}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    attempts = message.attempts + 1
    if not error:
        OutboxMessage.objects.filter(pk=message_id).update(
            status=OutboxMessage.Status.SENT,
            attempts=attempts,
            sent_at=timezone.now(),
            last_attempt_at=now,
            response_status=status,
            location=location,
            claimed_until=None,
            last_error="",
        )
        return "sent"
    # A 4xx other than 408/429 will not pass by retrying: the unit admin sees it and may retry by hand.
    permanent = status is not None and 400 <= status < 500 and status not in (408, 429)
    gave_up = permanent or attempts >= settings.NEOPAIN_FHIR_PUSH_MAX_ATTEMPTS
    OutboxMessage.objects.filter(pk=message_id).update(
        status=OutboxMessage.Status.FAILED if gave_up else OutboxMessage.Status.PENDING,
        attempts=attempts,
        last_attempt_at=now,
        next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts)),
        response_status=status,
        last_error=error,
        claimed_until=None,
    )
    logger.warning("FHIR push of %s failed (attempt %s): %s", message, attempts, error)
    return "failed" if gave_up else "retry"


def outbox_retry(*, message: OutboxMessage, user, request=None) -> None:
    """The unit admin's "retry now" on a failed message."""
    OutboxMessage.objects.filter(pk=message.pk, status=OutboxMessage.Status.FAILED).update(
        status=OutboxMessage.Status.PENDING, next_attempt_at=timezone.now(), attempts=0
    )
    audit_record(action="fhir.push.retry", actor=user, unit=message.unit, obj=message, request=request)
    transaction.on_commit(lambda: _publish(message.pk))


def outbox_due_ids(*, limit: int = 500) -> list[int]:
    now = timezone.now()
    return list(
        OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def outbox_sweep() -> int:
    """Publish every due message (those a broker outage or a lost worker left behind)."""
    ids = outbox_due_ids()
    for pk in ids:
        _publish(pk)
    return len(ids)
