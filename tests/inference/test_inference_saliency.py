"""Grad-CAM overlays for PainNet and the bootstrap FER proxy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.bundle import load_bundle
from inference.saliency import gradcam, gradcam_map


@pytest.fixture(scope="module")
def face_crop(astronaut: Image.Image) -> Image.Image:
    return astronaut.crop((140, 20, 310, 210))


@pytest.mark.parametrize("which", ["painnet_bundle", "bootstrap_bundle"])
def test_gradcam_overlay_is_a_224_rgb_image(which: str, request: pytest.FixtureRequest, face_crop: Image.Image) -> None:
    path, sha = request.getfixturevalue(which)
    model = load_bundle(path, expected_sha256=sha)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    overlay = gradcam(model, face_crop)
    assert overlay.size == (224, 224) and overlay.mode == "RGB"
    heat = gradcam_map(model, face_crop)
    assert heat.shape == (224, 224)
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    assert heat.std() > 0.01, "a constant map explains nothing"
    # The cached serving model is untouched and still serves without gradients.
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, before[key])
    assert all(p.grad is None for p in model.module.parameters())
    assert not any(p.requires_grad for p in model.module.parameters())


def test_overlay_differs_from_the_crop_where_the_map_is_hot(
    painnet_bundle: tuple[Path, str], face_crop: Image.Image
) -> None:
    model = load_bundle(painnet_bundle[0])
    from inference.preprocess import letterbox

    base = np.asarray(letterbox(face_crop, 224), dtype=float)
    overlay = np.asarray(gradcam(model, face_crop), dtype=float)
    heat = gradcam_map(model, face_crop)
    change = np.abs(overlay - base).mean(axis=2)
    assert change.mean() > 5
    assert np.corrcoef(heat.ravel(), overlay[:, :, 0].ravel())[0, 1] > 0  # hot = red-ish
