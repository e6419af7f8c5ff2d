"""Training and LOSOCV through the real commands on the planted-signal dataset."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from inference import training as tr
from tests.learning.conftest import FAST, NONPAIN, PAIN, SUBJECTS, last_json_line
from tests.learning.planted import planted_manifest_write


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def losocv_run(dataset, crop_cache, *options) -> str:
    """``evaluate_model --losocv`` on ``dataset`` with the shared crop cache and ``--json``: its stdout."""
    return run("evaluate_model", "--dataset", str(dataset), "--losocv", *options, "--cache", str(crop_cache), "--json")


def test_it_reads_the_folder_layout(planted):
    images = tr.dataset_read(planted)
    assert len(images) == SUBJECTS * (PAIN + NONPAIN)
    summary = tr.dataset_summary(images)
    assert summary["n_subjects"] == SUBJECTS and summary["n_pain"] == SUBJECTS * PAIN
    assert {i.subject for i in images} == {f"s{k:02d}" for k in range(SUBJECTS)}


def test_it_reads_a_csv_manifest_with_relative_paths(planted, tmp_path):
    manifest = planted_manifest_write(planted, planted / "manifest-test.csv")
    images = tr.dataset_read(manifest)
    assert sorted((i.path, i.subject, i.label) for i in images) == sorted(
        (i.path, i.subject, i.label) for i in tr.dataset_read(planted)
    )


def test_it_rejects_a_manifest_with_an_unknown_label(planted, tmp_path):
    image = next(planted.glob("*/pain/*.png"))
    bad = tmp_path / "bad.csv"
    bad.write_text(f"path,subject,label\n{image},s00,maybe\n")
    with pytest.raises(tr.DatasetError, match="neither pain nor nonpain"):
        tr.dataset_read(bad)


def test_face_crops_are_cached_by_content_detector_and_preprocessing(planted, tmp_path):
    images = tr.dataset_read(planted)[:4]
    first = tr.face_crops(images, cache_dir=tmp_path, progress=False)
    assert first.cache_hits == 0 and len(first.crops) == 4 and not first.skipped
    again = tr.face_crops(images, cache_dir=tmp_path, progress=False)
    assert again.cache_hits == 4
    assert [np.asarray(c).tobytes() for c in again.crops] == [np.asarray(c).tobytes() for c in first.crops]
    assert first.crops[0].size == (224, 224)
    other_margin = tr.face_crops(images, settings=tr.CropSettings(margin=0.3), cache_dir=tmp_path, progress=False)
    assert other_margin.cache_hits == 0


def test_losocv_finds_the_planted_signal_through_evaluate_model(planted, crop_cache, tmp_path):
    plot = tmp_path / "losocv.png"
    out = losocv_run(
        planted,
        crop_cache,
        "--features",
        "cnn",
        "--backbone",
        "mobilenet_v2",
        "fer_cnn",
        *FAST,
        "--augment-views",  # the un-augmented view only: halves the backbone passes on 2 cores
        "0",
        "--plot",
        str(plot),
    )
    result = last_json_line(out)
    assert result["best_backbone"] == "mobilenet_v2"
    assert result["accuracy_mean"] >= 0.9, out
    assert result["auc"] >= 0.9
    assert len(result["folds"]) == SUBJECTS
    assert {f["subject"] for f in result["folds"]} == {f"s{k:02d}" for k in range(SUBJECTS)}
    # Early stopping never looked at the held-out subject.
    assert all(f["subject"] not in f["validation_subjects"] for f in result["folds"])
    assert set(result["backbones"]) == {"mobilenet_v2", "fer_cnn"}
    # Figures a reviewer needs: per-subject means (each neonate counts once) and the pooled AUC.
    assert 0.9 <= result["balanced_accuracy_mean"] <= 1.0 and result["auc_mean"] >= 0.9
    assert result["auc_subjects"] == SUBJECTS
    assert all({"sensitivity", "specificity", "balanced_accuracy", "auc"} <= set(f) for f in result["folds"])
    assert len(result["risk_coverage"]) <= 101
    assert "held-out subject is never among them" in result["choices"]["epoch"]
    for key in (
        "accuracy_sd",
        "thresholds",
        "aurc",
        "ece",
        "ece_temperature_scaled",
        "sensitivity",
        "specificity",
        "guarantee",
    ):
        assert key in result
    manual = [row["manual"] for row in result["thresholds"]]
    assert manual == sorted(manual)
    assert {row["threshold"] for row in result["thresholds"]} >= {0.55, 0.6}
    assert all({"threshold", "accuracy", "manual"} <= set(row) for row in result["thresholds"])
    assert "mobilenet_v2" in out.splitlines()[2] or "mobilenet_v2" in out  # side-by-side table
    assert (tmp_path / "losocv-mobilenet_v2.png").stat().st_size > 1000
    assert (tmp_path / "losocv-fer_cnn.png").is_file()


def test_losocv_on_a_csv_manifest(planted, crop_cache, tmp_path):
    manifest = planted_manifest_write(planted, planted / "manifest-losocv.csv")
    result = last_json_line(losocv_run(manifest, crop_cache, "--features", "cnn", "--backbone", "fer_cnn", *FAST))
    assert result["n"] == SUBJECTS * (PAIN + NONPAIN) and len(result["folds"]) == SUBJECTS


def test_evaluate_model_needs_a_mode(planted):
    with pytest.raises(CommandError, match="--losocv"):
        run("evaluate_model", "--dataset", str(planted))


def test_training_is_reproducible_with_a_seed(planted, crop_cache, tmp_path):
    def train(seed, name):
        return last_json_line(
            run(
                "train_model",
                "--dataset",
                str(planted),
                "--features",
                "cnn",
                "--backbone",
                "fer_cnn",
                *FAST,
                "--seed",
                str(seed),
                "--cache",
                str(crop_cache),
                "--out",
                str(tmp_path / name),
                "--no-register",
                "--json",
            )
        )

    first, second, other = train(7, "a.pt"), train(7, "b.pt"), train(8, "c.pt")
    strip = lambda m: {k: v for k, v in m["metrics"].items() if k != "train_seconds"}  # noqa: E731
    assert strip(first) == strip(second)
    assert first["metrics"]["thresholds"] == second["metrics"]["thresholds"]
    assert strip(first) != strip(other)
