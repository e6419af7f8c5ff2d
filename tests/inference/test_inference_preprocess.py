"""Crop, letterbox and the shared transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from inference.bootstrap import bootstrap_metadata
from inference.painnet import default_spec
from inference.preprocess import (
    batch_tensor,
    crop_face,
    eval_transform,
    expand_box,
    letterbox,
    make_spec,
    train_transform,
    validate_spec,
)


def test_letterbox_keeps_aspect_and_pads_symmetrically() -> None:
    wide = Image.new("RGB", (200, 100), (250, 10, 10))
    out = letterbox(wide, 224, fill=(0, 0, 0))
    assert out.size == (224, 224)
    pixels = np.asarray(out)
    rows_with_content = np.flatnonzero(pixels[:, :, 0].max(axis=1) > 128)
    assert rows_with_content.min() == 56 and rows_with_content.max() == 167  # 112 rows, centred
    assert pixels[:56].max() == 0 and pixels[168:].max() == 0
    tall = letterbox(Image.new("L", (30, 90), 255), 224, fill=(9, 9, 9))
    assert tall.mode == "RGB"
    cols = np.flatnonzero(np.asarray(tall)[:, :, 0].max(axis=0) > 128)
    assert len(cols) == 75 and abs(cols.min() - (224 - 75) // 2) <= 1
    assert tuple(np.asarray(tall)[0, 0]) == (9, 9, 9)


def test_letterbox_upscales_small_crops() -> None:
    out = letterbox(Image.new("RGB", (10, 20), (255, 255, 255)), 224)
    assert np.asarray(out)[:, :, 0].max(axis=0).astype(bool).sum() == 112


def test_expand_box_and_crop_face() -> None:
    assert expand_box((10, 10, 20, 40), 0.5, (100, 100)) == (0, 0, 40, 70)
    assert expand_box((90, 90, 20, 20), 0.0, (100, 100)) == (90, 90, 10, 10)
    with pytest.raises(ValueError):
        expand_box((200, 200, 10, 10), 0.1, (100, 100))
    with pytest.raises(ValueError):
        expand_box((1, 1, 0, 5), 0.1, (100, 100))
    image = Image.fromarray(np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3))
    crop = crop_face(image, (10, 20, 30, 40), margin=0.1)
    assert crop.size == (36, 48)
    assert np.array_equal(np.asarray(crop), np.asarray(image)[16:64, 7:43])


@pytest.mark.parametrize(
    "spec",
    [default_spec("mobilenet_v2"), default_spec("fer_cnn"), bootstrap_metadata()["preprocessing"]],
    ids=["mobilenet_v2", "fer_cnn", "bootstrap"],
)
def test_batch_tensor_equals_the_eval_transform(spec: dict, astronaut: Image.Image) -> None:
    crops = [astronaut.crop((100, 30, 330, 260)), astronaut.crop((0, 0, 512, 300)), astronaut]
    expected = torch.stack([eval_transform(spec)(crop) for crop in crops])
    got = batch_tensor(crops, spec)
    side = spec["input_size"]
    assert got.shape == (3, 1 if spec["grayscale"] else 3, side, side)
    assert torch.allclose(got, expected, atol=1e-5)


def test_train_transform_augments_but_keeps_shape(astronaut: Image.Image) -> None:
    spec = default_spec("mobilenet_v2")
    names = [type(step).__name__ for step in train_transform(spec).transforms]
    assert "RandomRotation" in names and "RandomHorizontalFlip" in names
    rotation = next(s for s in train_transform(spec).transforms if type(s).__name__ == "RandomRotation")
    assert list(rotation.degrees) == [0.0, 15.0]
    torch.manual_seed(0)
    outs = [train_transform(spec)(astronaut) for _ in range(4)]
    assert all(o.shape == (3, 224, 224) for o in outs)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    base = eval_transform(spec)(astronaut)
    assert base.shape == (3, 224, 224)


def test_spec_validation() -> None:
    spec = make_spec(input_size=48, mean=(0.5,), std=(0.5,), grayscale=True, center_crop=0.8)
    assert spec == validate_spec(spec)
    assert spec["fill"] == [0, 0, 0]
    with pytest.raises(ValueError, match="mean/std"):
        make_spec(grayscale=True)
    with pytest.raises(ValueError, match="center_crop"):
        make_spec(center_crop=1.5)
    with pytest.raises(ValueError, match="std"):
        make_spec(std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="invalid preprocessing spec"):
        validate_spec({"size": 224})
