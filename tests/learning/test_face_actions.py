"""Facial actions from the face mesh, the linear probe's LOSOCV, and evaluate_model --features."""

from __future__ import annotations

import numpy as np
import pytest

from inference.face_actions import ACTIONS, action_features, action_measures, face_mesh
from inference.training.linear import linear_losocv


def test_the_mesh_places_the_eyes_above_the_mouth_of_a_real_face(mesh_model, astronaut_crop):
    points = face_mesh(mesh_model).landmarks(astronaut_crop)
    assert points.shape == (468, 3)
    assert points[159, 1] < points[13, 1] and points[386, 1] < points[14, 1]  # lids above the lips
    assert points[33, 0] < points[263, 0]  # the two eye corners apart, left to right in the image
    measures = action_measures(points)
    assert set(measures) == set(ACTIONS) and all(0 < v < 2 for v in measures.values())


def test_the_measures_follow_a_squeeze_and_ignore_the_face_size(mesh_model, astronaut_crop):
    points = face_mesh(mesh_model).landmarks(astronaut_crop)
    squeezed = points.copy()
    for upper, lower in ((159, 145), (386, 374)):
        squeezed[upper, :2] = (points[upper, :2] + points[lower, :2]) / 2
    assert action_measures(squeezed)["eye_squeeze"] < 0.6 * action_measures(points)["eye_squeeze"]
    assert action_features(points * 2.5) == pytest.approx(action_features(points), rel=1e-4)


def test_a_linear_probe_with_the_baseline_sees_through_each_babys_own_face():
    rng = np.random.default_rng(0)
    subjects = [f"s{i}" for i in range(6) for _ in range(12)]
    labels = np.array([int(j < 4) for _ in range(6) for j in range(12)])
    offsets = {s: rng.normal(scale=3.0, size=4) for s in set(subjects)}
    features = np.stack([offsets[s] for s in subjects]) + rng.normal(scale=0.3, size=(72, 4))
    features[:, 0] += labels * 1.0  # pain: a small change against the baby's own rest
    with_baseline = linear_losocv(features, labels, subjects, name="t", baseline="neonate", progress=False)
    without = linear_losocv(features, labels, subjects, name="t", baseline="none", progress=False)
    assert with_baseline["balanced_accuracy_mean"] > 0.9 > without["balanced_accuracy_mean"]
    assert with_baseline["auc_mean"] > 0.95 and len(with_baseline["risk_coverage"]) <= 101
    assert all("l2" in fold and "sensitivity" in fold for fold in with_baseline["folds"])
    assert "inner leave-one-subject-out" in with_baseline["choices"]["l2"]


@pytest.mark.django_db
def test_evaluate_model_puts_actions_embedding_and_combined_side_by_side(planted, crop_cache, mesh_model, monkeypatch):
    from tests.learning.conftest import last_json_line
    from tests.learning.test_training import losocv_run

    monkeypatch.setenv("NEOPAIN_FACE_MESH_MODEL", str(mesh_model))
    out = losocv_run(
        planted, crop_cache, "--features", "actions", "embedding", "combined", "--baseline", "neonate", "--no-progress"
    )
    result = last_json_line(out)
    assert set(result["backbones"]) == {"actions", "embedding", "combined"}
    for name, run in result["backbones"].items():
        assert run["features"] == name and run["baseline"] == "neonate"
        assert run["auc_mean"] is not None and len(run["folds"]) == 6
    assert "Face-mesh actions of" in out


@pytest.mark.django_db
def test_train_model_writes_a_facial_action_bundle_and_needs_the_baseline(
    planted, crop_cache, mesh_model, monkeypatch, tmp_path
):
    from django.core.management import CommandError

    from inference.bundle import read_bundle
    from tests.learning.conftest import last_json_line
    from tests.learning.test_training import run

    monkeypatch.setenv("NEOPAIN_FACE_MESH_MODEL", str(mesh_model))
    common = ["--dataset", str(planted), "--features", "actions", "--cache", str(crop_cache), "--no-progress"]
    with pytest.raises(CommandError, match="--baseline neonate"):
        run("train_model", *common, "--baseline", "none", "--no-register")
    out = run("train_model", *common, "--baseline", "neonate", "--out", str(tmp_path / "a.pt"), "--json")
    assert "Training the facial-action model" in out and "chosen by leave-one-subject-out" in out
    result = last_json_line(out)
    metadata = read_bundle(tmp_path / "a.pt")[0]["metadata"]
    assert metadata["architecture"] == "face_actions" and metadata["baseline"]["kind"] == "neonate"
    assert result["metrics"]["l2"] == metadata["training"]["l2"] and result["model_version_id"]
