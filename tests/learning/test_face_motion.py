"""Facial movement against the baby's resting face: alignment, optical flow, LOSOCV and training commands."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.face_actions import ACTIONS, face_mesh
from inference.face_motion import (
    FACE_SIZE,
    N_EMBEDDING,
    N_FEATURES,
    aligned_face,
    crops_motion_embeddings,
    motion_features,
)
from inference.training.linear import motion_losocv


def _embedding(face: np.ndarray) -> np.ndarray:
    return np.concatenate([np.ones(len(ACTIONS), np.float32), face.reshape(-1).astype(np.float32)])


def _squeezed(face: np.ndarray, row: float, amount: float) -> np.ndarray:
    """``face`` with the band around ``row`` compressed vertically (the planted eye squeeze's warp)."""
    import cv2

    yy, xx = np.mgrid[0:FACE_SIZE, 0:FACE_SIZE].astype(np.float32)
    window = np.exp(-0.5 * ((yy - row) / 6.0) ** 2)
    return cv2.remap(face, xx, yy + amount * (yy - row) * window, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_the_aligned_face_does_not_follow_a_turn_of_the_head(mesh_model, astronaut_crop):
    mesh = face_mesh(mesh_model)
    upright = aligned_face(astronaut_crop, mesh.landmarks(astronaut_crop))
    turned_crop = astronaut_crop.rotate(12, resample=Image.Resampling.BILINEAR)
    turned = aligned_face(turned_crop, mesh.landmarks(turned_crop))
    assert upright.shape == (FACE_SIZE, FACE_SIZE) and upright.min() >= 0 and upright.max() <= 255
    assert np.corrcoef(upright.ravel(), turned.ravel())[0, 1] > 0.7
    rows = crops_motion_embeddings([astronaut_crop, turned_crop], mesh=mesh)
    assert rows.shape == (2, N_EMBEDDING)


def test_the_flow_sees_a_squeeze_and_not_a_shift_of_the_whole_face(mesh_model, astronaut_crop):
    rest = aligned_face(astronaut_crop, face_mesh(mesh_model).landmarks(astronaut_crop))
    centre = _embedding(rest)
    same, shifted, squeezed = motion_features(
        np.stack([centre, _embedding(np.roll(rest, 2, axis=1)), _embedding(_squeezed(rest, 24.0, 0.8))]),
        np.stack([centre] * 3),
    )
    # Identical faces: next to no flow (Farneback leaves a little in flat corners of the aligned face).
    assert same.shape == (N_FEATURES,) and np.abs(same).mean() < 0.05 * np.abs(squeezed).mean()
    assert np.abs(shifted).mean() < 0.35 * np.abs(squeezed).mean()
    # Above the squeezed row the face moved down, below it up: the y flow changes sign across it.
    flow_y = squeezed.reshape(16, 16, 2)[..., 1]
    assert (
        flow_y[4:6, 4:12].mean() < 0 < flow_y[7:9, 4:12].mean()
        or flow_y[4:6, 4:12].mean() > 0 > flow_y[7:9, 4:12].mean()
    )


def test_the_motion_losocv_sees_a_squeeze_against_each_babys_own_rest(mesh_model, astronaut_crop):
    rng = np.random.default_rng(0)
    rest = aligned_face(astronaut_crop, face_mesh(mesh_model).landmarks(astronaut_crop))
    rows, labels, subjects = [], [], []
    for s in range(5):
        base = np.clip(rest * rng.uniform(0.8, 1.2) + rng.normal(0, 10, rest.shape), 0, 255).astype(np.float32)
        for k in range(12):
            pain = int(k < 4)
            face = _squeezed(base, 24.0, rng.uniform(0.5, 0.9) if pain else rng.uniform(0, 0.1))
            rows.append(_embedding(np.clip(face + rng.normal(0, 3, face.shape), 0, 255)))
            labels.append(pain)
            subjects.append(f"s{s}")
    result = motion_losocv(np.stack(rows), np.array(labels), subjects, progress=False)
    assert result["balanced_accuracy_mean"] > 0.85 and result["auc_mean"] > 0.9
    # Nothing is drawn at random: the same rows give the same out-of-fold predictions.
    again = motion_losocv(np.stack(rows), np.array(labels), subjects, progress=False)
    assert again["oof"]["p_pain"] == result["oof"]["p_pain"]
    assert result["config"]["baseline"] == "neonate" and "resting face" in result["choices"]["baseline"]


@pytest.mark.django_db
def test_evaluate_and_train_the_facial_movement_model(planted, crop_cache, mesh_model, monkeypatch, tmp_path):
    from django.core.management import CommandError

    from inference.bundle import read_bundle
    from tests.learning.conftest import last_json_line
    from tests.learning.test_training import losocv_run, run

    monkeypatch.setenv("NEOPAIN_FACE_MESH_MODEL", str(mesh_model))
    out = losocv_run(planted, crop_cache, "--features", "motion", "actions", "--baseline", "neonate", "--no-progress")
    result = last_json_line(out)
    assert set(result["backbones"]) == {"motion", "actions"}
    motion = result["backbones"]["motion"]
    assert motion["features"] == "motion" and motion["baseline"] == "neonate" and len(motion["folds"]) == 6
    assert "Aligned faces (face mesh) of" in out
    common = ["--dataset", str(planted), "--features", "motion", "--cache", str(crop_cache), "--no-progress"]
    with pytest.raises(CommandError, match="--baseline neonate"):
        run("train_model", *common, "--baseline", "none", "--no-register")
    # No --features, no --baseline: the facial-movement model against each neonate's baseline (issue 14).
    default = ["--dataset", str(planted), "--cache", str(crop_cache), "--no-progress"]
    out = run("train_model", *default, "--out", str(tmp_path / "m.pt"), "--json")
    assert out.startswith("Model: the facial-movement model (--features motion), the default")
    assert "Training the facial-movement model" in out
    metadata = read_bundle(tmp_path / "m.pt")[0]["metadata"]
    assert metadata["architecture"] == "face_motion" and metadata["training"]["features"] == "motion"
    assert metadata["baseline"]["kind"] == "neonate"
    assert metadata["feature_dim"] == N_EMBEDDING and last_json_line(out)["model_version_id"]


@pytest.mark.django_db
def test_compare_models_judges_a_baseline_candidate_against_each_babys_rest(
    planted, crop_cache, mesh_model, monkeypatch, tmp_path
):
    """compare_models scores a face model as the worker serves it: against each baby's resting face."""
    from annotations.model_comparison import models_compare
    from inference import thresholds as th
    from inference import training as tr
    from inference.baseline import model_evaluate_p_pain
    from inference.bundle import load_bundle
    from inference.training.actions_model import train_actions_model
    from triage import services

    monkeypatch.setenv("NEOPAIN_FACE_MESH_MODEL", str(mesh_model))
    crops = tr.face_crops(tr.dataset_read(planted), cache_dir=crop_cache, progress=False)
    config = tr.TrainConfig(finetune="head", baseline="neonate", baseline_min_frames=4)
    path = tmp_path / "motion.pt"
    tr.bundle_write(train_actions_model(crops, config=config, kind="motion"), path, version="m")
    candidate = services.model_version_register(bundle_path=path)
    result = models_compare(candidate=candidate, dataset=planted, cache_dir=crop_cache)
    figures = result["models"]["candidate"]
    assert figures["baseline"]["baseline"] == "neonate" and not figures["baseline"]["cold_start_subjects"]
    trained_on = set(candidate.metadata["training_data"]["train_sha256"])
    keep = [i for i, sha in enumerate(crops.file_sha256) if sha not in trained_on]
    held_out = crops.subset(keep)
    everyone = {s: [c for c, t in zip(crops.crops, crops.subjects) if t == s] for s in set(crops.subjects)}
    expected, _ = model_evaluate_p_pain(load_bundle(path), held_out.crops, held_out.subjects, baseline_crops=everyone)
    assert result["n"] == len(keep) > 0
    assert figures["auc"] == pytest.approx(th.binary_metrics(p_pain=expected, labels=held_out.labels)["auc"])
