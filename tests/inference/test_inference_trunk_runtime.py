"""The classifier's trunk on ONNX Runtime: same probabilities and Grad-CAM maps as PyTorch, honest fallbacks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference import trunk_runtime
from inference.bundle import BundleError, LoadedModel, clear_cache, load_bundle
from inference.saliency import gradcam_batch


@pytest.fixture(autouse=True)
def _fresh_models():
    clear_cache()
    yield
    clear_cache()


def crops(astronaut: Image.Image) -> list[Image.Image]:
    face = astronaut.crop((150, 20, 330, 230)).resize((224, 224))
    return [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), face.rotate(12), face.rotate(-8)]


def served(bundle: tuple[Path, str], runtime: str, monkeypatch: pytest.MonkeyPatch) -> LoadedModel:
    monkeypatch.setenv("NEOPAIN_CLASSIFIER_RUNTIME", runtime)
    return load_bundle(bundle[0], expected_sha256=bundle[1], device="cpu")


def probabilities_and_maps(model: LoadedModel, images: list[Image.Image]):
    with torch.inference_mode(False):
        batch = model.to_tensor(images)
    logits, maps = gradcam_batch(model, batch)
    return model.predict_proba(images)[:, model.pain_index], logits, np.stack(maps)


def test_painnet_on_cpu_serves_its_trunk_on_onnx_runtime_by_default(painnet_bundle, monkeypatch):
    monkeypatch.delenv("NEOPAIN_CLASSIFIER_RUNTIME", raising=False)
    model = load_bundle(painnet_bundle[0], expected_sha256=painnet_bundle[1], device="cpu")
    assert model.runtime == "onnxruntime"
    assert model.trunk_runner.max_abs_difference <= trunk_runtime.MAX_ABS_DIFFERENCE


def test_onnx_runtime_gives_the_same_probabilities_and_gradcam_maps_as_pytorch(
    painnet_bundle, astronaut, monkeypatch
):
    images = crops(astronaut)
    p_torch, logits_torch, maps_torch = probabilities_and_maps(served(painnet_bundle, "torch", monkeypatch), images)
    ort_model = served(painnet_bundle, "onnxruntime", monkeypatch)
    assert ort_model.runtime == "onnxruntime"
    p_ort, logits_ort, maps_ort = probabilities_and_maps(ort_model, images)

    assert np.abs(p_torch - p_ort).max() < 1e-5
    assert float((logits_torch - logits_ort).abs().max()) < 1e-4
    assert np.abs(maps_torch - maps_ort).max() < 1e-3
    # Grad-CAM's logits are the served logits: one forward pass gives both.
    assert np.allclose(torch.softmax(logits_ort, dim=1)[:, ort_model.pain_index].numpy(), p_ort, atol=1e-6)
    # The maps are real maps, not blanks: they vary across the face and peak at 1.
    assert all(m.max() == pytest.approx(1.0) and m.std() > 0.01 for m in maps_ort)


def test_the_bootstrap_model_stays_on_pytorch(bootstrap_bundle, monkeypatch):
    assert served(bootstrap_bundle, "auto", monkeypatch).runtime == "torch"


def test_forcing_onnx_runtime_on_a_model_it_cannot_serve_refuses_to_load(bootstrap_bundle, monkeypatch):
    with pytest.raises(trunk_runtime.TrunkRuntimeError, match="cannot serve"):
        served(bootstrap_bundle, "onnxruntime", monkeypatch)


def test_an_unknown_runtime_is_a_clear_error(painnet_bundle, monkeypatch):
    with pytest.raises(ValueError, match="NEOPAIN_CLASSIFIER_RUNTIME must be one of"):
        served(painnet_bundle, "tensorrt", monkeypatch)


def test_a_trunk_that_disagrees_with_pytorch_is_refused_and_auto_falls_back(painnet_bundle, monkeypatch, caplog):
    monkeypatch.setattr(trunk_runtime, "MAX_ABS_DIFFERENCE", -1.0)  # nothing can pass the check
    with caplog.at_level(logging.WARNING, logger="inference.trunk_runtime"):
        model = served(painnet_bundle, "auto", monkeypatch)
    assert model.runtime == "torch"
    assert "differs from PyTorch" in caplog.text
    clear_cache()
    with pytest.raises(trunk_runtime.TrunkRuntimeError, match="differs from PyTorch"):
        served(painnet_bundle, "onnxruntime", monkeypatch)


def test_a_failed_export_falls_back_to_pytorch_and_still_serves(painnet_bundle, astronaut, monkeypatch):
    def broken(*args, **kwargs):
        raise trunk_runtime.TrunkRuntimeError("exporting the trunk to ONNX failed: simulated")

    monkeypatch.setattr(trunk_runtime, "_export", broken)
    model = served(painnet_bundle, "auto", monkeypatch)
    assert model.runtime == "torch"
    assert model.predict_proba(crops(astronaut)).shape == (4, 2)


def test_the_runtime_is_part_of_the_model_cache_key(painnet_bundle, monkeypatch):
    on_ort = served(painnet_bundle, "onnxruntime", monkeypatch)
    on_torch = served(painnet_bundle, "torch", monkeypatch)
    assert (on_ort.runtime, on_torch.runtime) == ("onnxruntime", "torch")
    assert served(painnet_bundle, "onnxruntime", monkeypatch) is on_ort


def test_a_bundle_refused_for_its_hash_is_refused_whatever_the_runtime(painnet_bundle, monkeypatch):
    monkeypatch.setenv("NEOPAIN_CLASSIFIER_RUNTIME", "onnxruntime")
    with pytest.raises(BundleError):
        load_bundle(painnet_bundle[0], expected_sha256="0" * 64)
