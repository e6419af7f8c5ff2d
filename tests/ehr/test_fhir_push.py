"""Push to the EHR through the outbox, against a small FHIR server started by the test on 127.0.0.1:
it goes down (connection refused), comes back, once loses its answer after creating; nothing is lost,
nothing is created twice, nothing acknowledged is sent again."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery.exceptions import Retry

from annotations.services import assessment_create
from ehr import services
from ehr.models import OutboxMessage
from tests.ehr.conftest import auto_verdict, fhir_validate
from tests.factories import AlertFactory, FrameFactory, PredictionFactory, TriageCaseFactory

pytestmark = pytest.mark.django_db

ITEMS = {"face": 1, "cry": 2, "breathing": 1, "arms": 0, "legs": 0, "arousal": 1}


class FakeEhr:
    """A FHIR server's create with ``If-None-Exist`` (conditional create), as HAPI and the like do."""

    def __init__(self):
        self.created: dict[str, dict] = {}  # identifier -> resource
        self.creations: list[str] = []
        self.posts = 0
        self.drop_next_answer = False
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.lock = threading.Lock()

    def start(self):
        ehr = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["If-None-Exist"].removeprefix("identifier=")
                with ehr.lock:
                    ehr.posts += 1
                    status = 200 if key in ehr.created else 201
                    if status == 201:
                        ehr.created[key] = body
                        ehr.creations.append(key)
                    drop, ehr.drop_next_answer = ehr.drop_next_answer, False
                if drop:  # created, but the answer never reaches NeoPain
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(status)
                self.send_header("Location", f"{self.path}/{len(ehr.creations)}/_history/1")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ehr_server(settings):
    server = FakeEhr()
    server.start()
    settings.NEOPAIN_FHIR_ENDPOINT = f"http://127.0.0.1:{server.port}/fhir"
    settings.NEOPAIN_FHIR_TIMEOUT_SECONDS = 2
    yield server
    if server.server is not None:
        try:
            server.stop()
        except Exception:
            pass


@pytest.fixture
def published(monkeypatch):
    """Message ids published to the broker (the test plays the worker); no backoff wait."""
    ids: list[int] = []
    monkeypatch.setattr("ehr.services.outbox._publish", ids.append)
    monkeypatch.setattr("ehr.services.outbox.backoff_seconds", lambda attempts: 0)
    return ids


def _decide(neonate, nurse, capture, model):
    case = TriageCaseFactory(prediction=PredictionFactory(frame=FrameFactory(neonate=neonate), model_version=model))
    with capture(execute=True):
        return assessment_create(case=case, nurse=nurse, items=ITEMS)


def _deliver_all(ids=None) -> list[str]:
    return [services.outbox_deliver(message_id=pk) for pk in (ids or services.outbox_due_ids())]


def test_nothing_lost_nothing_twice_while_the_ehr_goes_down_and_comes_back(
    ehr_server, published, neonate, nurse, unit_admin, model, browser_for, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    # 1. EHR up: a nurse's pain score (its Observation, and the alert's Flag) and an automatic alert.
    first = _decide(neonate, nurse, capture, model)
    with capture(execute=True):
        AlertFactory(neonate=neonate, source="auto", prediction=auto_verdict(neonate=neonate, model=model))
    assert len(published) == 4  # nips, nurse alert flag, ai observation, auto alert flag
    assert _deliver_all(published) == ["sent"] * 4

    # 2. EHR down: two more decisions wait in the outbox (their alerts fall in the first one's
    #    cooldown: no new Flag); the unit admin sees why.
    ehr_server.stop()
    second = _decide(neonate, nurse, capture, model)
    third = _decide(neonate, nurse, capture, model)
    assert set(_deliver_all()) == {"retry"}
    waiting = OutboxMessage.objects.filter(status="pending")
    assert waiting.count() == 2 and all("ConnectionError" in m.last_error for m in waiting)
    page = browser_for(unit_admin).get("/ehr/outbox/")
    assert page.status_code == 200 and b"ConnectionError" in page.content and b"2</strong> waiting" in page.content

    # 3. EHR back, but its first answer is lost after it created the resource: NeoPain retries, the
    #    conditional create finds it, nothing new is created.
    ehr_server.start()
    ehr_server.drop_next_answer = True
    outcomes = _deliver_all()
    while services.outbox_due_ids():
        outcomes += _deliver_all()
    assert "retry" in outcomes

    # Nothing lost: every message sent, every resource at the EHR once.
    assert not OutboxMessage.objects.exclude(status="sent").exists()
    expected = {f"urn:neopain/observation|nips-{a.pk}" for a in (first, second, third)}
    assert expected <= set(ehr_server.created)
    assert len(ehr_server.creations) == len(set(ehr_server.creations)) == OutboxMessage.objects.count() == 6
    # Nothing acknowledged is sent again: a redelivered task message does nothing.
    posts = ehr_server.posts
    assert set(_deliver_all(list(OutboxMessage.objects.values_list("pk", flat=True)))) == {"skipped"}
    assert ehr_server.posts == posts
    assert services.outbox_sweep() == 0


def test_what_is_posted_validates_and_references_by_identifier(
    ehr_server, published, neonate, nurse, model, django_capture_on_commit_callbacks
):
    assessment = _decide(neonate, nurse, django_capture_on_commit_callbacks, model)
    _deliver_all(published)

    observation = ehr_server.created[f"urn:neopain/observation|nips-{assessment.pk}"]
    flag = next(r for r in ehr_server.created.values() if r["resourceType"] == "Flag")
    for resource in (observation, flag):
        fhir_validate(resource)
        assert "id" not in resource
    assert observation["subject"] == {"identifier": {"system": "urn:neopain:mrn", "value": neonate.mrn}}
    assert (
        "reference" not in observation["performer"][0]
        and observation["performer"][0]["identifier"]["value"] == nurse.username
    )
    assert flag["author"]["identifier"]["value"] == nurse.username


def test_a_refusal_is_failed_at_once_and_the_admin_can_retry(
    ehr_server,
    published,
    neonate,
    nurse,
    model,
    unit_admin,
    browser_for,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    class Refused:
        status_code, text, headers = 422, "Unprocessable: profile", {}

    monkeypatch.setattr("ehr.services.outbox.requests.post", lambda *a, **k: Refused())
    _decide(neonate, nurse, django_capture_on_commit_callbacks, model)
    assert set(_deliver_all(published)) == {"failed"}
    failed = OutboxMessage.objects.filter(status="failed").first()
    admin = browser_for(unit_admin)
    assert b"HTTP 422" in admin.get("/ehr/outbox/").content

    monkeypatch.undo()
    monkeypatch.setattr("ehr.services.outbox._publish", published.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(f"/ehr/outbox/{failed.pk}/retry").status_code == 302
    assert services.outbox_deliver(message_id=failed.pk) == "sent"


def test_no_endpoint_no_outbox(settings, neonate, nurse, model, django_capture_on_commit_callbacks):
    settings.NEOPAIN_FHIR_ENDPOINT = ""
    _decide(neonate, nurse, django_capture_on_commit_callbacks, model)

    assert not OutboxMessage.objects.exists()


def test_push_units_limit_it_to_some_units(
    ehr_server, published, settings, neonate, nurse, model, django_capture_on_commit_callbacks
):
    settings.NEOPAIN_FHIR_PUSH_UNITS = ["south"]
    _decide(neonate, nurse, django_capture_on_commit_callbacks, model)

    assert not OutboxMessage.objects.exists()


def test_another_units_admin_sees_none_of_it(
    ehr_server, published, neonate, nurse, model, other_unit_admin, browser_for, django_capture_on_commit_callbacks
):
    ehr_server.stop()
    _decide(neonate, nurse, django_capture_on_commit_callbacks, model)
    _deliver_all(published)

    page = browser_for(other_unit_admin).get("/ehr/outbox/")
    assert b"nips-" not in page.content and b"0</strong> waiting" in page.content
    assert browser_for(nurse).get("/ehr/outbox/").status_code == 403


def test_the_celery_tasks_deliver_retry_and_sweep(
    ehr_server, published, neonate, nurse, model, django_capture_on_commit_callbacks
):
    from ehr import tasks

    _decide(neonate, nurse, django_capture_on_commit_callbacks, model)
    first = published[0]
    assert tasks.outbox_deliver.apply(args=[first]).get() == "sent"
    assert tasks.outbox_deliver.apply(args=[first]).get() == "skipped"  # a redelivered message
    assert tasks.outbox_deliver.apply(args=[999999]).get() is None  # a row that is gone

    ehr_server.stop()
    second = published[1]
    # The failed attempt asks Celery for a retry after the message's backoff (2 s after a first failure).
    with pytest.raises(Retry) as retry:
        tasks.outbox_deliver.apply(args=[second], throw=True)
    assert retry.value.when == 2
    message = OutboxMessage.objects.get(pk=second)
    assert message.status == "pending" and message.attempts == 1
    published.clear()
    assert tasks.fhir_sweep.apply().get()["outbox"] == 1 and published == [second]  # backoff 0 here: due again
