"""Per-neonate baseline: the maths, training with it, and serving it (the worker keeps one per neonate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.baseline import (
    BaselinePolicy,
    baseline_of_window,
    baseline_statistic,
    baseline_window_append,
    relative_p_pain,
)


def test_the_baseline_is_the_median_and_ignores_a_minority_of_pain_frames():
    rest = np.zeros((7, 3), np.float32)
    pain = np.full((3, 3), 5.0, np.float32)
    assert baseline_statistic(np.concatenate([rest, pain])).tolist() == [0.0, 0.0, 0.0]


def test_too_few_frames_is_a_cold_start_and_the_window_is_bounded():
    policy = BaselinePolicy(min_frames=3, window=4)
    window = baseline_window_append(None, np.ones((2, 2)), size=policy.window)
    assert baseline_of_window(window, policy) is None
    window = baseline_window_append(window, np.arange(6, dtype=np.float32).reshape(3, 2), size=policy.window)
    assert window.shape == (4, 2)  # the oldest frame dropped
    assert baseline_of_window(window, policy).tolist() == [1.5, 2.0]


def test_relative_p_pain_judges_the_embedding_minus_the_baseline_and_averages_the_mirror():
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 2)
    e, f, c = (np.random.default_rng(i).normal(size=(5, 4)).astype(np.float32) for i in range(3))
    with torch.no_grad():
        logits = (head(torch.from_numpy(e - c)) + head(torch.from_numpy(f - c))) / 2
    expected = torch.softmax(logits / 2.0, dim=1)[:, 1].numpy()
    assert relative_p_pain(head, e, f, c, temperature=2.0) == pytest.approx(expected, abs=1e-6)
    # The same frame against another baby's resting face scores differently.
    assert not np.allclose(relative_p_pain(head, e, f, c), relative_p_pain(head, e, f, c + 1))


def test_a_baseline_needs_the_head_only_fine_tune():
    from inference.training import TrainConfig

    with pytest.raises(ValueError, match="finetune 'head'"):
        TrainConfig(baseline="neonate", finetune="last")
    assert TrainConfig(baseline="neonate", finetune="head").baseline_policy().min_frames == 10


@pytest.mark.slow  # ~23 s on one thread of the shared 2-core machine (two LOSOCV runs of 6 folds)
@pytest.mark.django_db
def test_evaluate_model_shows_baseline_none_and_neonate_side_by_side(planted, crop_cache):
    from tests.learning.conftest import FAST, last_json_line
    from tests.learning.test_training import losocv_run

    out = losocv_run(
        planted,
        crop_cache,
        "--features",
        "cnn",
        *FAST,
        "--epochs",
        "3",
        "--augment-views",
        "0",
        "--baseline",
        "none",
        "neonate",
    )
    result = last_json_line(out)
    runs = result["backbones"]
    assert set(runs) == {"mobilenet_v2+none", "mobilenet_v2+neonate"}
    assert runs["mobilenet_v2+neonate"]["baseline"] == "neonate"
    assert runs["mobilenet_v2+neonate"]["config"]["baseline"] == "neonate"
    assert "own frames" in runs["mobilenet_v2+neonate"]["choices"]["baseline"]
    assert runs["mobilenet_v2+none"]["choices"]["baseline"].startswith("none")
    # Centring changes what the head sees, so the out-of-fold figures differ.
    assert runs["mobilenet_v2+none"]["folds"] != runs["mobilenet_v2+neonate"]["folds"]
    assert "mobilenet_v2+neonate" in out.split("summary")[1].splitlines()[0]
