"""The training recipes: per-group rates, schedule, early stopping on AUC, bedside augmentation,
flip averaging served as evaluated, threads and reproducibility of LOSOCV."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from inference import thresholds as th
from inference import training as tr
from inference.bundle import load_bundle
from inference.preprocess import RandomJpeg, bedside_transform, make_spec
from inference.saliency import gradcam_batch
from tests.learning.conftest import FAST, last_json_line
from tests.learning.test_training import losocv_run
from tests.support import environ_without_app_settings


@pytest.fixture(scope="module")
def crops(planted, crop_cache):
    return tr.face_crops(tr.dataset_read(planted), cache_dir=crop_cache, progress=False)


def test_the_paper_recipe_stays_reachable_and_options_override_a_recipe():
    paper = tr.TrainConfig.for_recipe("paper")
    assert (paper.lr, paper.backbone_lr, paper.stop_on, paper.augment, paper.flip_tta) == (
        1e-5,
        None,
        "val_loss",
        "paper",
        False,
    )
    default = tr.TrainConfig()
    assert default.recipe == "default" and default.lr >= 10 * default.backbone_lr and default.flip_tta
    assert default.min_val_subjects >= 2 and default.stop_on == "auc"
    assert tr.TrainConfig.for_recipe("paper", lr=3e-4, epochs=None).lr == 3e-4
    assert tr.TrainConfig.for_recipe("paper", epochs=None).epochs == 60
    with pytest.raises(ValueError, match="recipe must be one of"):
        tr.TrainConfig.for_recipe("magic")


def test_the_schedule_warms_up_then_decays_to_zero():
    config = tr.TrainConfig(epochs=10, warmup_epochs=2)
    factor = tr.lr_schedule(config, steps_per_epoch=5)
    ramp = [factor(step) for step in range(10)]
    assert ramp == sorted(ramp) and ramp[0] == pytest.approx(0.1) and ramp[-1] == pytest.approx(1.0)
    decay = [factor(step) for step in range(10, 50)]
    assert decay == sorted(decay, reverse=True) and decay[-1] < 0.01
    constant = tr.lr_schedule(tr.TrainConfig.for_recipe("paper"), steps_per_epoch=5)
    assert {constant(step) for step in range(300)} == {1.0}


def test_the_backbone_trains_at_its_own_rate(crops):
    """``backbone_lr`` much smaller than the head's: the head moves, the backbone tail hardly."""
    config = tr.TrainConfig(
        finetune="last", epochs=2, augment_views=0, lr=1e-2, backbone_lr=1e-9, warmup_epochs=0, flip_tta=False
    )
    subjects = crops.subjects
    bank = tr.FeatureBank(crops.crops, config=config, progress=False)
    before = bank.new_model().state_dict()
    result = tr.train_painnet(
        crops=crops,
        train_indices=tr.subject_indices(subjects, ["s00", "s01", "s02", "s03"]),
        val_indices=tr.subject_indices(subjects, ["s04", "s05"]),
        config=config,
        bank=bank,
        progress=False,
    )
    after = result.model.state_dict()
    tail = "backbone.features.18.0.weight"  # MobileNetV2's final 1x1 conv: in the trained tail
    head = "head.0.weight"
    assert torch.allclose(after[tail], before[tail], atol=1e-6)
    assert not torch.allclose(after[head], bank.new_model().state_dict()[head])


def test_early_stopping_keeps_the_epoch_with_the_best_validation_auc(crops):
    config = tr.TrainConfig(
        backbone="fer_cnn", finetune="head", epochs=12, patience=12, augment_views=1, lr=3e-3, flip_tta=False
    )
    subjects = crops.subjects
    result = tr.train_painnet(
        crops=crops,
        train_indices=tr.subject_indices(subjects, ["s00", "s01", "s02"]),
        val_indices=tr.subject_indices(subjects, ["s03", "s04", "s05"]),
        config=config,
        progress=False,
    )
    best = max(result.history, key=lambda r: (r["val_auc"], -r["val_loss"]))
    assert result.best_epoch == best["epoch"]
    # The weights kept are that epoch's: their validation AUC is the recorded one.
    assert th.roc_auc(p_pain=result.val_p_pain, labels=result.val_labels) == pytest.approx(best["val_auc"])


def test_bedside_augmentation_is_seeded_and_varies_the_picture(astronaut_crop):
    transform = bedside_transform(make_spec())
    torch.manual_seed(3)
    first = transform(astronaut_crop)
    torch.manual_seed(3)
    again = transform(astronaut_crop)
    other = transform(astronaut_crop)
    assert first.shape == (3, 224, 224) and torch.equal(first, again) and not torch.equal(first, other)
    jpeg = RandomJpeg(quality=(30, 30), p=1.0)(astronaut_crop)
    assert jpeg.size == astronaut_crop.size and np.asarray(jpeg).tobytes() != np.asarray(astronaut_crop).tobytes()


@pytest.fixture(scope="module")
def astronaut_crop():
    from skimage import data

    return Image.fromarray(data.astronaut()[40:220, 150:330])


def test_the_served_bundle_computes_what_the_evaluation_did(crops, tmp_path):
    """Flip averaging and the temperature: the worker's p(pain) for the validation crops equals
    the figures train_model computed its threshold table from, Grad-CAM path included."""
    config = tr.TrainConfig(
        backbone="fer_cnn", finetune="head", epochs=6, augment_views=1, lr=3e-3, val_subjects=2, seed=1
    )
    trained = tr.train_model(crops, config=config, progress=False)
    assert trained.metadata["test_time_augmentation"] == "flip"
    assert trained.metadata["training"]["recipe"] == "default"
    assert trained.metadata["training"]["backbone_lr"] == config.backbone_lr
    path = tmp_path / "model.pt"
    sha = tr.bundle_write(trained, path)
    loaded = load_bundle(path, expected_sha256=sha)
    assert loaded.flip_tta
    val_idx = tr.subject_indices(crops.subjects, trained.metrics["validation_subjects"])
    val_crops = [crops.crops[i] for i in val_idx]
    served = loaded.predict_proba(val_crops)[:, loaded.pain_index]
    evaluated = th.temperature_apply(trained.result.val_p_pain, trained.temperature)
    np.testing.assert_allclose(served, evaluated, atol=1e-5)
    # Without the mirror the numbers differ: the test would notice flip averaging going missing.
    single = torch.softmax(
        torch.cat([loaded.logits_of(loaded.to_tensor([c]), mirror_average=False) for c in val_crops]), 1
    )
    assert not np.allclose(single[:, loaded.pain_index].numpy(), trained.result.val_p_pain, atol=1e-5)
    logits, maps = gradcam_batch(loaded, loaded.to_tensor(val_crops[:4]))
    np.testing.assert_allclose(logits.numpy(), loaded.predict_logits(val_crops[:4]), atol=1e-5)
    assert len(maps) == 4


def test_losocv_is_reproducible_and_reports_threads(planted, crop_cache):
    def evaluate():
        out = losocv_run(
            planted, crop_cache, "--features", "cnn", "--backbone", "fer_cnn", *FAST, "--seed", "5", "--threads", "1"
        )
        return out, last_json_line(out)

    (out, first), (_, second) = evaluate(), evaluate()
    assert "Threads: 1 (OMP_WAIT_POLICY=" in out and "Time: " in out
    assert first["threads"] == 1 and first["seconds_total"] > 0
    timing = {"seconds", "seconds_total"}

    def strip(result):
        return {k: v for k, v in result.items() if k not in timing | {"backbones"}}

    assert strip(first) == strip(second)
    assert first["folds"] == second["folds"] and first["thresholds"] == second["thresholds"]


@pytest.mark.slow  # a fresh interpreter importing Django and torch: ~20 s on a loaded 2-core machine
def test_the_training_commands_set_a_passive_openmp_wait_policy_before_torch_loads():
    env = environ_without_app_settings()
    env.pop("OMP_WAIT_POLICY", None)
    env["DJANGO_SETTINGS_MODULE"] = "neopain_site.settings"
    code = (
        "import os, sys, django; django.setup(); assert 'torch' not in sys.modules;"
        "import annotations.management.commands._options;"
        "print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=os.getcwd(), timeout=120
    )
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip().splitlines()[-1] == "PASSIVE"
