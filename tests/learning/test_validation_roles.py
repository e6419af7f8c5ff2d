"""Issue 15: early stopping, temperature and guarantee on disjoint validation subjects; the
guarantee set on audit labels when there are enough, else a stated, biased fallback."""

from __future__ import annotations

import numpy as np
import pytest

from inference import training as tr
from inference.training import serving


@pytest.fixture(scope="module")
def crops(planted, crop_cache):
    return tr.face_crops(tr.dataset_read(planted), cache_dir=crop_cache, progress=False)


def _config(**overrides):
    base = {"backbone": "fer_cnn", "finetune": "head", "epochs": 4, "augment_views": 1, "lr": 3e-3, "seed": 2}
    return tr.TrainConfig(**{**base, **overrides})


def test_three_or_more_subjects_give_three_disjoint_groups():
    subjects = [f"nb-{i}" for i in range(7) for _ in range(3)]
    roles = tr.validation_roles(subjects, seed=4)
    groups = [set(roles[k]) for k in ("early_stopping", "temperature", "calibration")]
    assert all(groups) and roles["reuse"] is None
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert set().union(*groups) == set(subjects)
    assert tr.validation_roles(subjects, seed=4) == roles  # seeded


def test_fewer_subjects_say_which_use_is_shared():
    two = tr.validation_roles(["a", "a", "b"], seed=0)
    assert two["early_stopping"] == ["a", "b"] and {*two["temperature"], *two["calibration"]} == {"a", "b"}
    assert "early stopping saw both" in two["reuse"]
    one = tr.validation_roles(["a"], seed=0)
    assert one["early_stopping"] == one["temperature"] == one["calibration"] == ["a"]
    assert "all used it" in one["reuse"]
    with_audit = tr.validation_roles(["a", "b", "c", "d"], seed=0, groups=2)
    assert with_audit["calibration"] == [] and with_audit["reuse"] is None
    assert not set(with_audit["early_stopping"]) & set(with_audit["temperature"])


def test_train_model_uses_the_three_groups_and_reports_the_biased_fallback(crops):
    trained = tr.train_model(crops, config=_config(val_subjects=3), progress=False)
    roles = trained.metrics["validation_roles"]
    assert roles == trained.metadata["training_data"]["validation_roles"]
    assert sorted(roles["early_stopping"] + roles["temperature"] + roles["calibration"]) == sorted(
        trained.metrics["validation_subjects"]
    )
    assert len({*roles["early_stopping"], *roles["temperature"], *roles["calibration"]}) == 3
    assert trained.metrics["calibration_scores"]["subjects"]
    assert set(trained.metrics["calibration_scores"]["subjects"]) == set(roles["calibration"])
    source = trained.metrics["calibration_source"]
    assert source["source"] == "validation subjects"
    assert "0 audit labels" in source["note"] and "biased" in source["note"]


def test_enough_audit_labels_set_the_guarantee_and_stay_out_of_training(crops, monkeypatch):
    monkeypatch.setattr(serving, "MIN_AUDIT_LABELS", 8)
    audit = [i % 5 == 0 for i in range(len(crops.images))]
    n_audit = sum(audit)
    assert n_audit >= 8
    trained = tr.train_model(crops, config=_config(val_subjects=2), progress=False, audit=audit)
    source = trained.metrics["calibration_source"]
    assert source["source"] == "audit" and source["n_images"] == n_audit
    assert len(trained.metrics["calibration_scores"]["labels"]) == n_audit
    audit_sha = {crops.file_sha256[i] for i, flag in enumerate(audit) if flag}
    assert not audit_sha & set(trained.metadata["training_data"]["train_sha256"])
    roles = trained.metrics["validation_roles"]
    assert roles["calibration"].startswith("audit labels")
    assert not set(roles["early_stopping"]) & set(roles["temperature"])
    # Too few audit labels: the fallback, and the audit images train like the others.
    monkeypatch.setattr(serving, "MIN_AUDIT_LABELS", n_audit + 1)
    fallback = tr.train_model(crops, config=_config(val_subjects=3), progress=False, audit=audit)
    assert fallback.metrics["calibration_source"]["source"] == "validation subjects"
    assert f"{n_audit} audit labels, {n_audit + 1} needed" in fallback.metrics["calibration_source"]["note"]


def test_audit_flags_must_match_the_images(crops):
    with pytest.raises(ValueError, match="flags for"):
        tr.train_model(crops, config=_config(), progress=False, audit=[True])


def test_served_figures_are_the_early_stopped_models(crops):
    trained = tr.train_model(crops, config=_config(val_subjects=3), progress=False)
    val_idx = tr.subject_indices(crops.subjects, trained.metrics["validation_subjects"])
    again = tr.predict_p_pain(trained.model, [crops.crops[i] for i in val_idx], config=_config())
    np.testing.assert_allclose(again, trained.result.val_p_pain, atol=1e-6)


def test_one_subject_holds_out_images_but_never_audit_ones(crops, monkeypatch):
    monkeypatch.setattr(serving, "MIN_AUDIT_LABELS", 2)
    one = [i for i, s in enumerate(crops.subjects) if s == crops.subjects[0]]
    single = tr.CropSet(
        images=[crops.images[i] for i in one],
        crops=[crops.crops[i] for i in one],
        file_sha256=[crops.file_sha256[i] for i in one],
        settings=crops.settings,
    )
    audit = [k < 2 for k in range(len(one))]
    trained = tr.train_model(single, config=_config(), progress=False, audit=audit)
    assert trained.metrics["calibration_source"]["source"] == "audit"
    assert not {single.file_sha256[0], single.file_sha256[1]} & set(trained.metadata["training_data"]["train_sha256"])
    assert trained.result.val_labels.size == (len(one) - 2) // 5
