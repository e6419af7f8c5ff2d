"""The face models (facial actions, facial movement) trained on the unit's nurse decisions."""

from __future__ import annotations

import pytest

from tests.learning import test_loop
from tests.learning.conftest import last_json_line
from tests.learning.test_loop import FRAMES_EACH, NEONATES, run
from triage.models import ModelVersion, TriageCase

pytestmark = pytest.mark.django_db

# test_loop's decided cases: 4 babies x 8 real-face frames, plus a double-scored and an unable case.
bootstrap_active = test_loop.bootstrap_active
nurse_decisions = test_loop.nurse_decisions


@pytest.mark.parametrize(
    ("features", "architecture", "title"),
    [("motion", "face_motion", "facial-movement"), ("actions", "face_actions", "facial-action")],
)
def test_train_model_fits_a_face_model_on_the_units_nurse_labels(
    features, architecture, title, nurse_decisions, unit, crop_cache, mesh_model, monkeypatch, tmp_path
):
    monkeypatch.setenv("NEOPAIN_FACE_MESH_MODEL", str(mesh_model))
    TriageCase.objects.filter(pk=nurse_decisions[0].pk).update(is_audit=True)
    output = run(
        "train_model",
        "--from-assessments",
        "--unit",
        unit.code,
        "--features",
        features,
        "--baseline",
        "neonate",
        # 8 frames per baby in the fixture: each gets its baseline (the default asks for 10).
        "--baseline-min-frames",
        "4",
        "--cache",
        str(crop_cache),
        "--no-progress",
        "--json",
    )
    trained = last_json_line(output)
    assert "Labels by source: nips_rule 33 (used)" in output
    assert f"Training the {title} model" in output and "served once a neonate has 4 frames" in output
    # The one audit label reached the face model: too few, so the guarantee says it fell back.
    assert "fell back to them: 1 audit labels, 30 needed" in output
    version = ModelVersion.objects.get(pk=trained["model_version_id"])
    assert version.architecture == architecture and version.unit == unit
    assert version.status == ModelVersion.Status.CANDIDATE and version.name == f"{architecture}-{unit.code}"
    assert version.metrics["l2"] is not None and version.metrics["features"] == features
    assert version.metrics["calibration_source"]["source"] == "validation subjects"
    dataset = version.metrics["dataset"]
    assert dataset["label_source"] == "nips_rule" and dataset["source"].startswith("nurse assessments")
    assert dataset["n_images"] == NEONATES * FRAMES_EACH + 1 and dataset["n_subjects"] == NEONATES + 1
    assert version.metrics["dataset"]["excluded"] == {"disagreement": 1, "unable_to_assess": 1}


def _synthetic_actions(n_subjects: int = 12, frames: int = 12):
    """Action features of ``n_subjects`` babies, each with its own resting face; pain moves one feature."""
    from pathlib import Path

    import numpy as np

    from inference.training import CropSet, CropSettings, LabelledImage

    rng = np.random.default_rng(0)
    subjects = [f"s{i:02d}" for i in range(n_subjects) for _ in range(frames)]
    labels = np.array([int(k % 3 == 0) for _ in range(n_subjects) for k in range(frames)])
    offsets = {s: rng.normal(scale=3.0, size=4) for s in set(subjects)}
    features = np.stack([offsets[s] for s in subjects]) + rng.normal(scale=0.3, size=(len(subjects), 4))
    features[:, 0] += labels * 1.5
    images = [
        LabelledImage(path=Path(f"{i}.png"), subject=s, label=int(y)) for i, (s, y) in enumerate(zip(subjects, labels))
    ]
    crops = CropSet(
        images=images,
        crops=[None] * len(images),
        file_sha256=[f"{i:064x}" for i in range(len(images))],
        settings=CropSettings(detector="none"),
    )
    return crops, features.astype(np.float32)


def test_a_face_model_sets_its_guarantee_on_audit_labels_kept_out_of_training():
    from inference.training import TrainConfig
    from inference.training.actions_model import train_actions_model

    crops, features = _synthetic_actions()
    # Three audit labels per baby (36): a random share of automatic verdicts, scored blind.
    audit = [k % 12 in (1, 5, 9) for k in range(len(crops.images))]
    config = TrainConfig(baseline="neonate", finetune="head", baseline_min_frames=4)
    trained = train_actions_model(crops, config=config, features=features, kind="actions", audit=audit)
    m = trained.metrics
    assert m["calibration_source"]["source"] == "audit"
    assert m["calibration_source"]["n_images"] == 36 and m["calibration_source"]["n_subjects"] == 12
    assert m["guarantee"]["n_calibration"] == 36 and m["validation_roles"]["calibration"] == "audit labels (36 frames)"
    trained_on = set(trained.metadata["training_data"]["train_sha256"])
    audit_sha = {sha for sha, flag in zip(crops.file_sha256, audit) if flag}
    assert trained_on and not trained_on & audit_sha
    assert trained.metadata["training_data"]["calibration_source"]["source"] == "audit"
    # Validation frames no longer include audit frames: fewer than the validation subjects' 12 each.
    assert sum(f["n"] for f in m["folds"]) == 9 * len(m["validation_subjects"])

    too_few = [flag and i < 29 * 4 for i, flag in enumerate(audit)]
    assert sum(too_few) == 29
    fallback = train_actions_model(crops, config=config, features=features, kind="actions", audit=too_few)
    source = fallback.metrics["calibration_source"]
    assert source["source"] == "validation subjects"
    assert "29 audit labels, 30 needed" in source["note"] and "biased" in source["note"]
    assert audit_sha & set(fallback.metadata["training_data"]["train_sha256"])


@pytest.fixture
def twelve_frames_each(unit, nurse, bootstrap_active):
    """4 babies x 12 real-face frames decided by a nurse: enough for each baby's baseline (10 by default)."""
    from tests.factories import FrameFactory, NeonateFactory
    from tests.learning.planted import planted_frame

    for i in range(NEONATES):
        neonate = NeonateFactory(unit=unit)
        for k in range(12):
            pain = k % 3 == 0
            image = planted_frame(subject=i, index=k, pain=pain)
            frame = FrameFactory(neonate=neonate, content=test_loop.png(image), width=160, height=160)
            test_loop._case(frame=frame, model_version=bootstrap_active, pain=pain, nurses=[nurse])


def test_the_retraining_job_trains_the_facial_movement_model_by_default(
    twelve_frames_each, unit, bootstrap_active, mesh_model, monkeypatch
):
    from annotations.tasks import retrain_when_new_labels
    from inference.bundle import read_bundle
    from triage.selectors import active_model_for_unit

    monkeypatch.setenv("NEOPAIN_FACE_MESH_MODEL", str(mesh_model))
    monkeypatch.setenv("NEOPAIN_RETRAIN_EVERY_N_LABELS", "10")
    monkeypatch.delenv("NEOPAIN_RETRAIN_FEATURES", raising=False)  # unset: the facial-movement model (issue 14)
    result = retrain_when_new_labels()
    assert result["features"] == "motion" and set(result["retrained"]) == {unit.code}
    version = ModelVersion.objects.get(pk=result["retrained"][unit.code])
    assert version.architecture == "face_motion" and version.unit == unit and version.name == f"face_motion-{unit.code}"
    assert version.status == ModelVersion.Status.CANDIDATE and active_model_for_unit(unit=unit) == bootstrap_active
    metrics = version.metrics
    assert metrics["features"] == "motion" and metrics["l2"] is not None
    assert metrics["dataset"]["source"] == "nurse assessments" and metrics["dataset"]["n_images"] == NEONATES * 12
    assert metrics["calibration_source"]["source"] == "validation subjects"
    assert "0 audit labels, 30 needed" in metrics["calibration_source"]["note"]
    # The face model always judges a frame against its baby's resting face, with the default policy.
    metadata = read_bundle(version.bundle_path)[0]["metadata"]
    assert metadata["baseline"]["kind"] == "neonate" and metadata["baseline"]["min_frames"] == 10
    assert "Facial movement (optical flow)" in metadata["description"]
    # No new labels since the candidate: the next run trains nothing.
    assert retrain_when_new_labels()["retrained"] == {}


def test_a_bad_retrain_features_value_fails_the_job_with_its_reason(unit, monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from annotations import learning
    from annotations.tasks import retrain_when_new_labels

    monkeypatch.setenv("NEOPAIN_RETRAIN_EVERY_N_LABELS", "10")
    monkeypatch.setenv("NEOPAIN_RETRAIN_FEATURES", "face")
    with pytest.raises(ImproperlyConfigured, match="NEOPAIN_RETRAIN_FEATURES must be one of cnn, actions, motion"):
        retrain_when_new_labels()
    with pytest.raises(ImproperlyConfigured, match="got 'face'"):
        learning.retrain_if_due(unit=unit, every_n=10)
    monkeypatch.setenv("NEOPAIN_RETRAIN_FEATURES", " ")
    assert learning.retrain_features() == "motion"
    with pytest.raises(ValueError, match="features must be one of"):
        learning.retrain_from_assessments(unit=unit, features="embedding")
