"""Retrain -> compare -> activate, end to end, from nurse decisions in the database."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from annotations import learning
from annotations.tasks import retrain_when_new_labels
from inference.detect import get_detector, select_face
from tests.factories import FrameFactory, NeonateFactory, NipsAssessmentFactory, PredictionFactory, TriageCaseFactory
from tests.learning.conftest import FAST, assert_threshold_figures, last_json_line
from tests.learning.planted import planted_frame
from triage.models import AuditEvent, ModelVersion, TriageCase

pytestmark = pytest.mark.django_db

NEONATES, FRAMES_EACH = 4, 8


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def bootstrap_active(db):
    """The shipped bootstrap model, registered and active for every unit (the day-one state)."""
    from inference.bootstrap import bootstrap_bundle_path
    from triage.services import model_version_register

    return model_version_register(bundle_path=bootstrap_bundle_path(), status="active")


def _case(*, frame, model_version, pain, nurses, required=1, verdicts=None, unable=False):
    """A decided case on ``frame`` with one assessment per nurse (``verdicts`` overrides pain each)."""
    detector = get_detector("retinaface")
    from inference.decode import decode_image

    with frame.image.open("rb") as handle:
        image = decode_image(handle.read())
    face = select_face(detector.detect(image), image.size)
    p_pain = 0.52 if pain else 0.48
    prediction = PredictionFactory(
        frame=frame,
        model_version=model_version,
        p_pain=p_pain,
        box_x=face.x,
        box_y=face.y,
        box_w=face.w,
        box_h=face.h,
    )
    verdicts = verdicts or [pain] * len(nurses)
    final = None if unable else any(verdicts)
    case = TriageCaseFactory(
        prediction=prediction,
        status=TriageCase.Status.DECIDED,
        decided_at=timezone.now(),
        assessments_required=required,
        final_pain=final,
    )
    for nurse, verdict in zip(nurses, verdicts):
        if unable:
            NipsAssessmentFactory(
                case=case, nurse=nurse, pain=None, total=None, unable_to_assess=True, unable_reason="baby turned away"
            )
        else:
            NipsAssessmentFactory(case=case, nurse=nurse, pain=verdict, total=5 if verdict else 1)
    return case


@pytest.fixture
def nurse_decisions(unit, nurse, second_nurse, bootstrap_active):
    """4 neonates x 8 frames with real faces, decided by nurses; plus the awkward cases."""
    cases = []
    neonates = [NeonateFactory(unit=unit, mrn=f"MRN-SECRET-{i}") for i in range(NEONATES)]
    for i, neonate in enumerate(neonates):
        for k in range(FRAMES_EACH):
            pain = k % 2 == 0
            frame = FrameFactory(
                neonate=neonate, content=png(planted_frame(subject=i, index=k, pain=pain)), width=160, height=160
            )
            cases.append(_case(frame=frame, model_version=bootstrap_active, pain=pain, nurses=[nurse]))
    extra = NeonateFactory(unit=unit, mrn="MRN-SECRET-X")
    frames = [
        FrameFactory(neonate=extra, content=png(planted_frame(subject=9, index=k, pain=True)), width=160, height=160)
        for k in range(3)
    ]
    # Double-scored, agreeing; double-scored, disagreeing; unable to assess.
    cases.append(
        _case(frame=frames[0], model_version=bootstrap_active, pain=True, nurses=[nurse, second_nurse], required=2)
    )
    cases.append(
        _case(
            frame=frames[1],
            model_version=bootstrap_active,
            pain=True,
            nurses=[nurse, second_nurse],
            required=2,
            verdicts=[True, False],
        )
    )
    cases.append(_case(frame=frames[2], model_version=bootstrap_active, pain=True, nurses=[nurse], unable=True))
    return cases


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_export_labels_by_nurse_decision_with_pseudonymous_subjects(nurse_decisions, unit, tmp_path):
    audit = nurse_decisions[0]
    TriageCase.objects.filter(pk=audit.pk).update(is_audit=True)
    out = run("export_training_set", "--out", str(tmp_path / "export"), "--unit", unit.code)
    assert "excluded" in out
    summary = learning.training_set_export(unit=unit, out_dir=tmp_path / "again")
    assert summary["n_images"] == NEONATES * FRAMES_EACH + 1  # + the agreeing double score
    assert summary["excluded"] == {"disagreement": 1, "unable_to_assess": 1}
    subjects = sorted(p.name for p in (tmp_path / "export").iterdir() if p.is_dir())
    assert len(subjects) == NEONATES + 1 and all(s.startswith("nb-") for s in subjects)
    names = " ".join(str(p) for p in (tmp_path / "export").rglob("*"))
    assert "MRN" not in names and "SECRET" not in names
    assert subjects == sorted({learning.subject_pseudonym(neonate_id=c.neonate_id) for c in nurse_decisions})
    pain_files = list((tmp_path / "export").glob("*/pain/*.png"))
    assert len(pain_files) == NEONATES * FRAMES_EACH // 2 + 1
    # Each label says why a nurse scored it: only audit labels are a random sample of automatic verdicts.
    assert summary["origins"] == {"uncertain": NEONATES * FRAMES_EACH - 1, "double-scored": 1, "audit": 1}
    with (tmp_path / "export" / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["origin"] for r in rows if r["case_id"] == str(audit.pk)} == {"audit"}
    # What train_model --from-assessments reads to set the guarantee on audit labels.
    from inference import training as tr

    images = tr.dataset_read(tmp_path / "again")
    flags = learning.audit_flags(tmp_path / "again", images)
    audit_paths = {tmp_path / "again" / r["path"] for r in rows if r["origin"] == "audit"}
    assert sum(flags) == 1 and {i.path for i, f in zip(images, flags) if f} == audit_paths


def test_retrain_compare_activate_end_to_end(
    nurse_decisions, unit, ml_engineer, bootstrap_active, crop_cache, planted, tmp_path
):
    from inference.pipeline import get_pipeline
    from triage.selectors import active_model_for_unit
    from triage.services import model_version_activate

    output = run(
        "train_model",
        "--from-assessments",
        "--unit",
        unit.code,
        "--features",
        "cnn",
        "--backbone",
        "mobilenet_v2",
        *FAST,
        "--cache",
        str(crop_cache),
        "--out",
        str(tmp_path / "unit-model.pt"),
        "--json",
    )
    trained = last_json_line(output)
    # One audit label is too few: the guarantee falls back to validation subjects, and says why.
    assert "guarantee fell back to validation subjects: 0 audit labels" in output
    assert trained["metrics"]["calibration_source"]["source"] == "validation subjects"
    assert "biased" in trained["metrics"]["calibration_source"]["note"]
    candidate = ModelVersion.objects.get(pk=trained["model_version_id"])
    assert candidate.status == ModelVersion.Status.CANDIDATE and candidate.unit == unit
    assert candidate.sha256 == trained["sha256"]
    assert_threshold_figures(candidate.metrics)
    for key in ("accuracy_mean", "accuracy_sd", "folds", "per_subject_accuracy", "backbone", "dataset"):
        assert key in candidate.metrics, key
    assert candidate.metrics["dataset"]["source"].startswith("nurse assessments")
    assert candidate.metrics["dataset"]["excluded"] == {"disagreement": 1, "unable_to_assess": 1}
    # Where the labels came from (issue 13): the default source, and what each source would give.
    assert "Labels by source: nips_rule" in output and "(used)" in output
    assert candidate.metrics["dataset"]["label_source"] == "nips_rule"
    assert set(candidate.metrics["dataset"]["label_sources"]) == {"nips_rule", "face_item", "nurse_call"}
    # Still the bootstrap until someone activates the candidate.
    assert active_model_for_unit(unit=unit) == bootstrap_active

    comparison = last_json_line(
        run("compare_models", "--candidate", str(candidate.pk), "--cache", str(crop_cache), "--json", "--store")
    )
    assert comparison["models"]["active"]["id"] == bootstrap_active.pk
    assert comparison["models"]["candidate"]["id"] == candidate.pk
    # Held out = the candidate's validation neonates' frames; its training frames are left out.
    assert comparison["n"] > 0 and comparison["n_excluded_training_images"] > 0
    assert comparison["n"] + comparison["n_excluded_training_images"] == NEONATES * FRAMES_EACH + 1
    assert comparison["models"]["candidate"]["accuracy"] >= comparison["models"]["active"]["accuracy"]
    assert "p_value" in comparison["mcnemar"]
    candidate.refresh_from_db()
    assert candidate.metrics["comparison"]["n"] == comparison["n"]

    # Threshold analysis on another labelled set, stored for the admin page.
    plot = tmp_path / "heldout.svg"
    analysis = last_json_line(
        run(
            "evaluate_model",
            "--dataset",
            str(planted),
            "--model",
            str(candidate.pk),
            "--store",
            "--cache",
            str(crop_cache),
            "--plot",
            str(plot),
            "--json",
        )
    )
    candidate.refresh_from_db()
    assert candidate.metrics["n"] == analysis["n"] > 0
    assert candidate.metrics["thresholds"] == analysis["thresholds"]
    assert candidate.metrics["evaluation"].startswith("held-out dataset")
    assert candidate.metrics["previous_evaluations"] and plot.stat().st_size > 1000
    assert analysis["n_excluded_training_images"] == 0  # the planted set never trained it
    # On the unit's own labels the frames that trained the candidate are left out, and counted.
    export = tmp_path / "export-again"
    run("export_training_set", "--out", str(export), "--unit", unit.code)
    again = last_json_line(
        run(
            "evaluate_model",
            "--dataset",
            str(export),
            "--model",
            str(candidate.pk),
            "--cache",
            str(crop_cache),
            "--json",
        )
    )
    assert again["n_excluded_training_images"] > 0
    assert again["n"] + again["n_excluded_training_images"] == NEONATES * FRAMES_EACH + 1

    model_version_activate(model_version=candidate, actor=ml_engineer)
    assert active_model_for_unit(unit=unit) == candidate
    assert AuditEvent.objects.filter(action="model.activated", object_id=str(candidate.pk)).exists()
    # What the worker does next batch: the new bundle serves the unit's frames.
    frame = nurse_decisions[0].prediction.frame
    with frame.image.open("rb") as handle:
        outcome = get_pipeline(candidate.bundle_path, expected_sha256=candidate.sha256).run(handle.read())
    assert outcome.status == "ok" and outcome.weights_sha256 == candidate.sha256


def test_kappa_per_model_version(nurse_decisions, unit, bootstrap_active):
    rows = learning.agreement_by_model_version(unit=unit)
    assert [r["model_version_id"] for r in rows] == [bootstrap_active.pk]
    row = rows[0]
    assert row["n_double_scored"] == 2
    assert row["agreement_nurse_nurse"] == pytest.approx(0.5)
    # Model vs nurse: every decided case with a verdict (the unable one has none).
    assert row["n_model_nurse"] == NEONATES * FRAMES_EACH + 2
    assert row["kappa_model_nurse"] is not None and -1 <= row["kappa_model_nurse"] <= 1
    assert row["n_audit"] == 0 and row["accuracy_audit"] is None
    assert row["n_uncertain"] == row["n_model_nurse"]


def test_live_accuracy_on_audit_cases_is_reported_apart_from_uncertain_cases(nurse_decisions, unit):
    from triage.models import Prediction

    audited = [c for c in nurse_decisions if c.final_pain is not None][:3]
    TriageCase.objects.filter(pk__in=[c.pk for c in audited]).update(is_audit=True)
    right = sum((c.prediction.label == Prediction.Label.PAIN) == bool(c.final_pain) for c in audited)
    row = learning.agreement_by_model_version(unit=unit)[0]
    assert row["n_audit"] == 3 and row["accuracy_audit"] == pytest.approx(right / 3)
    assert row["n_uncertain"] == NEONATES * FRAMES_EACH + 2 - 3
    assert row["n_model_nurse"] == row["n_audit"] + row["n_uncertain"]
    everyone = (row["agreement_uncertain"] * row["n_uncertain"] + right) / row["n_model_nurse"]
    assert row["agreement_model_nurse"] == pytest.approx(everyone)


def test_retraining_job_is_off_by_default(monkeypatch, unit):
    monkeypatch.delenv("NEOPAIN_RETRAIN_EVERY_N_LABELS", raising=False)
    assert retrain_when_new_labels() == {"enabled": False}


def test_retraining_job_retrains_when_enough_new_labels(monkeypatch, nurse_decisions, unit, bootstrap_active):
    calls = []
    monkeypatch.setattr(
        learning,
        "retrain_from_assessments",
        lambda *, unit, features: calls.append((unit.code, features)) or (bootstrap_active, {}),
    )
    monkeypatch.delenv("NEOPAIN_RETRAIN_FEATURES", raising=False)
    monkeypatch.setenv("NEOPAIN_RETRAIN_EVERY_N_LABELS", "1000")
    assert retrain_when_new_labels()["retrained"] == {}
    monkeypatch.setenv("NEOPAIN_RETRAIN_EVERY_N_LABELS", "10")
    assert retrain_when_new_labels()["retrained"] == {unit.code: bootstrap_active.pk}
    assert calls == [(unit.code, "motion")]  # the facial-movement model unless NEOPAIN_RETRAIN_FEATURES says otherwise
    monkeypatch.setenv("NEOPAIN_RETRAIN_FEATURES", "cnn")  # PainNet when asked
    assert retrain_when_new_labels()["features"] == "cnn" and calls[-1] == (unit.code, "cnn")
