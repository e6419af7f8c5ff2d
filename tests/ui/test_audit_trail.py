"""The audit log in words (issue 13, minor): bed/MRN and names instead of "triage.Prediction:19", views grouped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.ui.conftest import make_case
from triage.audit_trail import audit_rows
from triage.models import AuditEvent
from triage.services import audit_record

pytestmark = pytest.mark.django_db


def test_objects_read_as_bed_and_mrn_and_people_by_name(unit, nurse, unit_admin, neonate, model):
    case = make_case(neonate=neonate, model=model, crop=False)
    audit_record(action="case.claimed", actor=nurse, obj=case)
    audit_record(action="model.activated", actor=unit_admin, obj=model)
    audit_record(action="user.created", actor=unit_admin, obj=nurse)

    rows = audit_rows(list(AuditEvent.objects.order_by("-created_at", "-id")))

    words = [(r.who, r.what) for r in rows]
    assert ("Alice (alice)", "case of bed 4 · MRN-N-001") in words
    assert ("Adam (adam)", "model painnet v2.1") in words
    assert ("Adam (adam)", "person Alice (alice), nurse") in words


def test_runs_of_image_views_by_one_person_are_one_group(unit, nurse, second_nurse, neonate, model):
    case = make_case(neonate=neonate, model=model, crop=False)
    prediction = case.prediction
    audit_record(action="case.claimed", actor=nurse, obj=case)
    for kind, obj in (("crop", prediction), ("saliency", prediction), ("frame", prediction.frame)):
        audit_record(action=f"{kind}.viewed", actor=nurse, obj=obj)
    audit_record(action="crop.viewed", actor=second_nurse, obj=prediction)

    rows = audit_rows(list(AuditEvent.objects.order_by("-created_at", "-id")))

    assert [len(r.events) for r in rows] == [1, 3, 1]
    group = rows[1]
    assert group.is_group and group.who == "Alice (alice)"
    assert group.summary == "3 views: 1 crop, 1 full frame, 1 saliency map of bed 4 · MRN-N-001"


def test_views_far_apart_are_not_grouped(unit, nurse, neonate, model):
    prediction = make_case(neonate=neonate, model=model, crop=False).prediction
    AuditEvent.objects.create(
        action="crop.viewed",
        actor=nurse,
        actor_username="alice",
        object_type="triage.Prediction",
        object_id=str(prediction.pk),
        created_at=timezone.now() - timedelta(hours=1),
    )
    audit_record(action="crop.viewed", actor=nurse, obj=prediction)

    rows = audit_rows(list(AuditEvent.objects.order_by("-created_at", "-id")))

    assert [len(r.events) for r in rows] == [1, 1]


def test_the_audit_page_shows_words_and_groups_on_one_query_per_type(browser_for, unit_admin, nurse, neonate, model):
    case = make_case(neonate=neonate, model=model, crop=False)
    for _ in range(3):
        audit_record(action="crop.viewed", actor=nurse, obj=case.prediction, unit=neonate.unit)
    audit_record(action="case.claimed", actor=nurse, obj=case)

    client = browser_for(unit_admin)
    page = client.get("/audit/").content.decode()

    assert "case of bed 4 · MRN-N-001" in page
    assert "3 views: 3 crops of bed 4 · MRN-N-001" in page
    assert "Alice (alice)" in page
    # Whatever the page holds, object look-ups are one query per object type, not one per row.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get("/audit/")
    for i in range(40):
        other = make_case(neonate=neonate, model=model, crop=False)
        audit_record(action="case.claimed", actor=nurse, obj=other)
        audit_record(action="crop.viewed" if i % 2 else "case.released", actor=nurse, obj=other.prediction)
    with CaptureQueriesContext(connection) as many:
        client.get("/audit/")
    assert len(many) <= len(few) + 1  # + Prediction, a type not on the first page
