"""Issue 13, blocker 1: what can be seen vs observed at the cot; face-only reviews; label sources."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from annotations import observations as obs
from annotations import services
from annotations.nurse_labels import case_label, label_source_counts
from tests.ui.conftest import make_case
from triage.models import Alert, TriageCase

ALL = {"face": 1, "cry": 2, "breathing": 1, "arms": 0, "legs": 0, "arousal": 1}  # total 5
CALM = {"face": 0, "cry": 0, "breathing": 0, "arms": 1, "legs": 0, "arousal": 0}  # total 1
FACE_ONLY = {"face": 1, **dict.fromkeys(obs.BEDSIDE_ITEMS)}


# --- the pure rules ----------------------------------------------------------------------------


def test_a_complete_observation_at_the_cot_has_a_total_and_the_rule():
    verdict = obs.observation_verdict(obs.Method.COT, ALL, threshold=3, nurse_call=None)
    assert (verdict.kind, verdict.total, verdict.pain_by_rule, verdict.pain) == (obs.Kind.NIPS, 5, True, True)


@pytest.mark.parametrize("total_items, pain", [({**CALM, "arms": 0, "face": 1, "cry": 2}, True), (CALM, False)])
def test_the_pain_rule_is_total_at_least_the_threshold(total_items, pain):
    # face 1 + cry 2 = 3: exactly on the rule is pain; 1 is not.
    assert obs.observation_verdict(obs.Method.VIDEO, total_items, threshold=3, nurse_call=None).pain is pain


def test_a_face_only_review_has_no_total_and_needs_the_nurses_call():
    with pytest.raises(obs.ObservationError) as exc:
        obs.observation_verdict(obs.Method.IMAGE, FACE_ONLY, threshold=3, nurse_call=None)
    assert "nurse_call" in exc.value.errors
    verdict = obs.observation_verdict(obs.Method.IMAGE, FACE_ONLY, threshold=3, nurse_call=False)
    assert (verdict.kind, verdict.total, verdict.pain_by_rule, verdict.pain) == (obs.Kind.FACE_ONLY, None, None, False)


def test_from_the_image_only_no_bedside_item_can_be_scored():
    with pytest.raises(obs.ObservationError) as exc:
        obs.observation_check(obs.Method.IMAGE, {**FACE_ONLY, "arms": 0})
    assert list(exc.value.errors) == ["arms"]


def test_one_item_not_observed_makes_it_partial_and_never_a_partial_sum():
    items = {**ALL, "legs": None}
    assert obs.observation_kind(obs.Method.COT, items) == obs.Kind.PARTIAL
    assert obs.nips_total(obs.Method.COT, items) is None
    # A grimace alone at the cot (nothing else watched) is face only too, wherever it was seen from.
    assert obs.observation_kind(obs.Method.COT, FACE_ONLY) == obs.Kind.FACE_ONLY


def test_nothing_observed_is_refused():
    with pytest.raises(obs.ObservationError):
        obs.observation_check(obs.Method.COT, dict.fromkeys(obs.NIPS_ITEMS))


def test_a_blank_method_is_unrecorded_and_an_unknown_one_is_refused():
    assert obs.method_parse("") == obs.Method.UNRECORDED
    with pytest.raises(obs.ObservationError):
        obs.method_parse("telepathy")


@pytest.mark.parametrize(
    "source, kind, face, rule, call, expected",
    [
        (obs.LabelSource.NIPS_RULE, obs.Kind.NIPS, 1, True, None, True),
        (obs.LabelSource.NIPS_RULE, obs.Kind.FACE_ONLY, 1, None, True, None),  # never from a face-only review
        (obs.LabelSource.NIPS_RULE, obs.Kind.PARTIAL, 1, None, True, None),
        (obs.LabelSource.FACE_ITEM, obs.Kind.FACE_ONLY, 1, None, False, True),
        (obs.LabelSource.FACE_ITEM, obs.Kind.NIPS, 0, True, None, False),
        (obs.LabelSource.FACE_ITEM, obs.Kind.PARTIAL, None, None, True, None),
        (obs.LabelSource.NURSE_CALL, obs.Kind.FACE_ONLY, 1, None, False, False),
        (obs.LabelSource.NURSE_CALL, obs.Kind.NIPS, 1, True, None, None),
    ],
)
def test_label_for_each_source(source, kind, face, rule, call, expected):
    assert obs.label_for(source, kind=kind, face=face, pain_by_rule=rule, nurse_call=call) is expected


def test_unable_to_assess_gives_no_label_under_any_source():
    for source in obs.LabelSource:
        assert (
            obs.label_for(source, kind=obs.Kind.NIPS, face=1, pain_by_rule=True, nurse_call=True, unable=True) is None
        )


# --- the service ---------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


def test_a_face_only_review_is_stored_as_such_and_decides_by_the_nurses_call(case, nurse):
    a = services.assessment_create(case=case, nurse=nurse, items={"face": 1}, method="image", nurse_call=True)
    assert (a.kind, a.total, a.pain, a.nurse_call, a.method) == ("face_only", None, True, True, "image")
    assert a.observed_at == case.prediction.frame.captured_at  # the image's own time
    case.refresh_from_db()
    assert case.status == TriageCase.Status.DECIDED and case.final_pain is True
    assert Alert.objects.filter(assessment=a).exists()  # her pain call still alerts


def test_a_face_only_review_without_the_call_is_refused(case, nurse):
    with pytest.raises(ValidationError) as exc:
        services.assessment_create(case=case, nurse=nurse, items={"face": 0}, method="image")
    assert "nurse_call" in exc.value.message_dict


def test_a_bedside_item_scored_from_the_image_is_refused(case, nurse):
    with pytest.raises(ValidationError) as exc:
        services.assessment_create(
            case=case, nurse=nurse, items={"face": 0, "cry": 0}, method="image", nurse_call=False
        )
    assert "cry" in exc.value.message_dict


def test_at_the_cot_a_missing_item_is_an_error_but_not_observed_is_an_answer(case, nurse):
    with pytest.raises(ValidationError) as exc:
        services.assessment_create(case=case, nurse=nurse, items={**ALL, "legs": ""}, method="cot")
    assert "legs" in exc.value.message_dict
    a = services.assessment_create(case=case, nurse=nurse, items={**ALL, "legs": "x"}, method="cot", nurse_call=False)
    assert (a.kind, a.legs, a.total, a.pain) == ("partial", None, None, False)


def test_a_complete_bedside_observation_records_how_and_when(case, nurse):
    at = timezone.now() - timedelta(minutes=3)
    a = services.assessment_create(case=case, nurse=nurse, items=ALL, method="cot", observed_at=at)
    assert (a.kind, a.total, a.pain, a.method, a.observed_at) == ("nips", 5, True, "cot", at)


def test_an_observation_time_in_the_future_or_days_ago_is_refused(case, nurse):
    for at in (timezone.now() + timedelta(minutes=10), timezone.now() - timedelta(days=2)):
        with pytest.raises(ValidationError) as exc:
            services.assessment_create(case=case, nurse=nurse, items=ALL, method="cot", observed_at=at)
        assert "observed_at" in exc.value.message_dict


def test_without_a_method_it_is_recorded_as_unrecorded(case, nurse):
    a = services.assessment_create(case=case, nurse=nurse, items=ALL)
    assert (a.method, a.observed_at, a.kind, a.total) == ("unrecorded", None, "nips", 5)


# --- the API ---------------------------------------------------------------------------------------


def test_the_api_takes_a_face_only_review_and_says_face_only(client_for, nurse, case):
    response = client_for(nurse).post(
        f"/api/v1/cases/{case.pk}/assessment/", {"face": 1, "method": "image", "nurse_call": False}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "face_only" and body["face_only"] is True and body["total"] is None
    assert body["method"] == "image" and body["nurse_call"] is False and body["pain"] is False
    detail = client_for(nurse).get(f"/api/v1/cases/{case.pk}/").json()
    assert detail["assessments"][0]["face_only"] is True


def test_the_api_needs_not_observed_said_as_null(client_for, nurse, case):
    client = client_for(nurse)
    partial = {k: v for k, v in ALL.items() if k != "arms"}
    response = client.post(f"/api/v1/cases/{case.pk}/assessment/", {**partial, "method": "cot"}, format="json")
    assert response.status_code == 400 and "arms" in response.json()
    response = client.post(
        f"/api/v1/cases/{case.pk}/assessment/", {**partial, "arms": None, "method": "cot"}, format="json"
    )
    assert response.status_code == 400 and "nurse_call" in response.json()
    response = client.post(
        f"/api/v1/cases/{case.pk}/assessment/",
        {**partial, "arms": None, "method": "cot", "nurse_call": True},
        format="json",
    )
    assert response.status_code == 201 and response.json()["kind"] == "partial"


# --- the form ----------------------------------------------------------------------------------------


def test_the_form_splits_the_image_from_the_cot_and_asks_how(browser_for, nurse, case):
    client = browser_for(nurse)
    client.post(f"/cases/{case.pk}/claim/")
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "What the image shows" in page and "Observed at the cot" in page
    assert page.count('value="x"') == 6 and 'name="method"' in page and 'name="observed_time"' in page
    response = client.post(f"/annotations/cases/{case.pk}/assessment/", {k: str(v) for k, v in ALL.items()})
    assert response.status_code == 400 and "Say how the baby was observed" in response.content.decode()


def test_a_face_only_review_through_the_form_is_shown_as_face_only(browser_for, nurse, second_nurse, case):
    client = browser_for(nurse)
    client.post(f"/cases/{case.pk}/claim/")
    response = client.post(
        f"/annotations/cases/{case.pk}/assessment/",
        {"face": "1", "method": "image", "observed_time": "", "nurse_call": "no_pain"},
        follow=True,
    )
    text = response.content.decode()
    assert "face only, no NIPS total — no pain (nurse&#x27;s call, from the image only)" in text
    page = browser_for(second_nurse).get(f"/cases/{case.pk}/").content.decode()
    assert "face only</span> no NIPS total" in page and "cry not observed" in page


# --- export and label sources ---------------------------------------------------------------------


def test_the_csv_says_face_only_and_leaves_the_total_and_rule_verdict_blank(client_for, nurse, case):
    services.assessment_create(case=case, nurse=nurse, items={"face": 1}, method="image", nurse_call=True)
    body = b"".join(client_for(nurse).get("/api/v1/assessments/export.csv").streaming_content).decode()
    row = next(csv.DictReader(io.StringIO(body)))
    assert row["kind"] == "face only" and row["observation_method"] == "from the image only"
    assert row["nips_total"] == "" and row["pain"] == "" and row["nurse_call"] == "true" and row["cry"] == ""


@pytest.fixture
def three_kinds(neonate, model, nurse):
    """A complete cot observation (no pain), a face-only review (grimace, called pain), a partial one."""
    full, face, partial = (make_case(neonate=neonate, model=model) for _ in range(3))
    services.assessment_create(case=full, nurse=nurse, items=CALM, method="cot", resolve_related=False)
    services.assessment_create(case=face, nurse=nurse, items={"face": 1}, method="image", nurse_call=True)
    services.assessment_create(
        case=partial, nurse=nurse, items={**ALL, "arousal": None}, method="video", nurse_call=False
    )
    return [TriageCase.objects.get(pk=c.pk) for c in (full, face, partial)]


def test_each_source_labels_what_it_can_and_face_only_never_gives_a_nips_label(three_kinds, unit):
    full, face, partial = three_kinds
    assert [case_label(c, obs.LabelSource.NIPS_RULE) for c in three_kinds] == [
        (False, ""),
        (None, "no_nips_rule"),
        (None, "no_nips_rule"),
    ]
    assert [case_label(c, obs.LabelSource.FACE_ITEM)[0] for c in three_kinds] == [False, True, True]
    assert [case_label(c, obs.LabelSource.NURSE_CALL)[0] for c in three_kinds] == [None, True, False]
    assert label_source_counts(unit=unit) == {"nips_rule": 1, "face_item": 3, "nurse_call": 2}


def test_double_scorers_who_disagree_give_no_label(neonate, model, nurse, second_nurse):
    case = make_case(neonate=neonate, model=model, assessments_required=2)
    services.assessment_create(case=case, nurse=nurse, items=ALL, method="cot")
    services.assessment_create(case=case, nurse=second_nurse, items=CALM, method="cot")
    case.refresh_from_db()
    assert case_label(case, obs.LabelSource.NIPS_RULE) == (None, "disagreement")


@pytest.mark.parametrize("source, n_images", [("nips_rule", 1), ("face_item", 3), ("nurse_call", 2)])
def test_export_training_set_takes_a_label_source_and_reports_every_source(three_kinds, tmp_path, source, n_images):
    out = io.StringIO()
    call_command("export_training_set", "--out", str(tmp_path), "--label-source", source, stdout=out)
    text = out.getvalue()
    assert f"Wrote {n_images} crops" in text
    assert f"nips_rule 1{' (used)' if source == 'nips_rule' else ''}, face_item 3" in text
    summary = json.loads((tmp_path / "dataset.json").read_text())
    assert summary["label_source"] == source and summary["label_sources"]["nurse_call"] == 2
    with (tmp_path / "manifest.csv").open() as handle:
        methods = sorted(row["methods"] for row in csv.DictReader(handle))
    assert len(methods) == n_images and set(methods) <= {"cot", "image", "video"}


def test_an_unknown_label_source_is_refused(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("export_training_set", "--out", str(tmp_path), "--label-source", "vibes")


@pytest.mark.parametrize("command", ["train_model", "compare_models", "export_training_set"])
def test_the_training_commands_take_a_label_source_defaulting_to_the_nips_rule(command):
    from django.core.management import load_command_class

    parser = load_command_class("annotations", command).create_parser("manage.py", command)
    assert parser.get_default("label_source") == "nips_rule"
    choices = next(a for a in parser._actions if a.dest == "label_source").choices
    assert choices == ["nips_rule", "face_item", "nurse_call"]


def test_a_face_only_review_in_fhir_has_no_total_and_says_it_is_the_nurses_call(case, nurse):
    from ehr.resources import nips_observation

    a = services.assessment_create(case=case, nurse=nurse, items={"face": 1}, method="image", nurse_call=True)
    observation = nips_observation(a)
    assert "valueInteger" not in observation and "dataAbsentReason" in observation
    assert "nurse's call, face only" in json.dumps(observation["interpretation"])
