"""The GPU path's tensor stages against the PIL path, run on the CPU (same code, other device).

Tolerances (stated here, checked below):

* decode: batched ``decode_jpeg`` equals PIL's decoding within 2 levels in the mean (nvJPEG's
  IDCT and chroma upsampling differ slightly from libjpeg's); PNG, EXIF-rotated, progressive
  and broken files go through ``decode_image`` (same pixels, same reasons).
* crop + letterbox (``roi_align``): against ``letterbox(crop_face(...))``, mean absolute
  difference at most 0.5 of 255 levels and 99 % of values within 3 levels when the face is
  shrunk by at most 2x; shrunk further, at most 1.0 and 10 levels (``roi_align`` averages a box
  of samples, PIL weights them with a triangle: measured 0.98 and 9 for a 512 px box). The
  padding is exactly the fill colour.
* normalisation: within 1.5 levels (in 0..255 units) of ``batch_tensor`` everywhere.
* end to end: same statuses, boxes within 2 px and p(pain) within 0.01 of :class:`Pipeline`.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from inference.bundle import load_bundle
from inference.decode import decode_image
from inference.detect import get_detector
from inference.pipeline import Pipeline, TensorPipeline
from inference.preprocess import batch_tensor, crop_face, letterbox
from inference.runtime import classifier_precision
from inference.tensor_ops import crop_letterbox, decode_frames, normalise_crops
from tests.inference.inference_helpers import encode, exif_rotated_jpeg

CPU = torch.device("cpu")
CAPS = {"max_pixels": 40_000_000, "max_bytes": 20 * 1024 * 1024}
BOXES = [
    (160, 40, 180, 200),
    (0, 0, 512, 512),
    (300, 300, 212, 90),
    (10, 200, 60, 160),
    (250, 100, 101, 37),
    (100, 50, 400, 450),
]


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


def test_jpegs_decode_in_a_batch_and_the_rest_falls_back_to_pil(
    astronaut: Image.Image, bedside_frame: Image.Image
) -> None:
    jpeg = encode(bedside_frame, "JPEG", quality=90)
    progressive = encode(astronaut, "JPEG", quality=90, progressive=True)
    inputs = [
        jpeg,
        encode(astronaut, "PNG"),
        exif_rotated_jpeg(bedside_frame),
        progressive,
        jpeg[: len(jpeg) // 2],
        b"<svg/>",
    ]
    frames = decode_frames(inputs, CPU, **CAPS)
    assert [f.decoder for f in frames] == ["device", "cpu", "cpu", "cpu", "", ""]
    for data, frame in zip(inputs[:4], frames):
        want = np.asarray(decode_image(data), dtype=np.float32)
        got = frame.tensor.permute(1, 2, 0).numpy().astype(np.float32)
        assert got.shape == want.shape  # the EXIF-rotated frame comes out upright, as decode_image gives it
        assert np.abs(got - want).mean() <= 2.0
    with pytest.raises(ValueError) as truncated:
        decode_image(inputs[4])
    assert frames[4].reason == str(truncated.value) and frames[4].tensor is None
    assert "SVG" in frames[5].reason
    assert frames[0].sha256 and frames[0].sha256 != frames[1].sha256


def test_roi_align_crop_and_letterbox_match_pil_within_the_stated_tolerance(astronaut: Image.Image) -> None:
    fill = (10, 20, 30)
    got = crop_letterbox([as_tensor(astronaut)] * len(BOXES), BOXES, 224, fill)
    for box, crop in zip(BOXES, got):
        want = np.asarray(letterbox(crop_face(astronaut, box), 224, fill), dtype=np.float32)
        diff = np.abs(crop.permute(1, 2, 0).numpy() - want)
        x, y, w, h = box
        mean_limit, p99_limit = (0.5, 3) if max(w, h) <= 2 * 224 else (1.0, 10)
        assert diff.mean() <= mean_limit, (box, diff.mean())
        assert np.percentile(diff, 99) <= p99_limit, (box, np.percentile(diff, 99))
        scale = 224 / max(w, h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        if new_w < 224:  # padding columns are exactly the fill colour
            assert torch.equal(crop[:, :, 0], torch.tensor(fill, dtype=torch.float32)[:, None].expand(3, 224))
        if new_h < 224:
            assert torch.equal(crop[:, 0, :], torch.tensor(fill, dtype=torch.float32)[:, None].expand(3, 224))


def test_frames_of_different_sizes_are_cropped_in_one_call(astronaut: Image.Image, bedside_frame: Image.Image) -> None:
    frames = [as_tensor(astronaut), as_tensor(bedside_frame), as_tensor(astronaut)]
    boxes = [BOXES[0], (250, 60, 300, 320), BOXES[2]]
    got = crop_letterbox(frames, boxes, 224, (0, 0, 0))
    for image, box, crop in zip([astronaut, bedside_frame, astronaut], boxes, got):
        want = np.asarray(letterbox(crop_face(image, box), 224, (0, 0, 0)), dtype=np.float32)
        assert np.abs(crop.permute(1, 2, 0).numpy() - want).mean() <= 0.5


@pytest.mark.parametrize("bundle_fixture", ["bootstrap_bundle", "painnet_bundle"])
def test_normalisation_matches_batch_tensor(bundle_fixture: str, request, astronaut: Image.Image) -> None:
    model = load_bundle(request.getfixturevalue(bundle_fixture)[0], device="cpu")
    crops = [letterbox(crop_face(astronaut, box), 224, model.spec["fill"]) for box in BOXES]
    want = batch_tensor(crops, model.spec)
    got = normalise_crops(torch.stack([as_tensor(c).float() for c in crops]), model.spec)
    assert got.shape == want.shape
    std = torch.tensor(model.spec["std"]).view(1, -1, 1, 1)
    assert ((got - want).abs() * std * 255).max() <= 1.5


@pytest.fixture(scope="module")
def frames(astronaut: Image.Image, bedside_frame: Image.Image, no_face_image: Image.Image) -> list[bytes]:
    big = Image.new("RGB", (1280, 960), (90, 80, 70))
    big.paste(astronaut, (500, 200))
    return [
        encode(bedside_frame, "JPEG", quality=90),
        encode(astronaut, "JPEG", quality=85),
        encode(big, "JPEG", quality=90),
        encode(bedside_frame, "PNG"),
        encode(no_face_image, "JPEG", quality=90),
        exif_rotated_jpeg(bedside_frame),
        b"not an image",
    ]


def test_tensor_pipeline_gives_the_pil_pipelines_outcomes(frames: list[bytes], painnet_bundle) -> None:
    model = load_bundle(painnet_bundle[0], device="cpu")
    reference = Pipeline(model, get_detector("retinaface", device="cpu", runtime="onnx"))
    tensor = TensorPipeline(model, get_detector("retinaface", device="cpu", runtime="torch"), chunk=3)
    want, got = reference.run_batch(frames), tensor.run_batch(frames)
    assert [o.status for o in got] == [o.status for o in want] == ["ok"] * 4 + ["no_face", "ok", "unreadable"]
    for a, b in zip(got, want):
        assert a.frame_sha256 == b.frame_sha256 and a.reason == b.reason
        if b.status == "ok":
            assert max(abs(p - q) for p, q in zip(a.box, b.box)) <= 2
            assert abs(a.p_pain - b.p_pain) <= 0.01 and a.label == b.label
            assert a.crop.size == (224, 224) and a.timings_ms["classify"] > 0


def test_tensor_pipeline_with_saliency_maps(frames: list[bytes], painnet_bundle) -> None:
    model = load_bundle(painnet_bundle[0], device="cpu")
    pipeline = TensorPipeline(model, get_detector("retinaface", device="cpu", runtime="torch"), saliency=True)
    outcomes = pipeline.run_batch(frames[:2])
    assert all(o.status == "ok" and o.saliency_map is not None for o in outcomes)


def test_tensor_pipeline_refuses_a_detector_without_tensor_input(painnet_bundle) -> None:
    model = load_bundle(painnet_bundle[0], device="cpu")
    with pytest.raises(ValueError, match="cannot detect on tensors"):
        TensorPipeline(model, get_detector("retinaface", device="cpu", runtime="onnx"))


def test_precision_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEOPAIN_CLASSIFIER_PRECISION", raising=False)
    assert classifier_precision(torch.device("cuda")) == "bf16"
    assert classifier_precision(CPU, "bf16") == "fp32"  # the CPU path stays fp32
    monkeypatch.setenv("NEOPAIN_CLASSIFIER_PRECISION", "fp32")
    assert classifier_precision(torch.device("cuda")) == "fp32"
    monkeypatch.setenv("NEOPAIN_CLASSIFIER_PRECISION", "fp8")
    with pytest.raises(ValueError, match="NEOPAIN_CLASSIFIER_PRECISION"):
        classifier_precision(torch.device("cuda"))


def test_pil_round_trip_of_crops_is_lossless() -> None:
    from inference.tensor_ops import crops_to_pil

    crops = torch.randint(0, 256, (2, 3, 16, 16)).float()
    images = crops_to_pil(crops)
    assert all(isinstance(i, Image.Image) and i.mode == "RGB" for i in images)
    assert np.array_equal(np.stack([np.asarray(i) for i in images]), crops.permute(0, 2, 3, 1).numpy().astype(np.uint8))


def test_crops_encoded_as_jpeg_by_the_tensor_path(frames: list[bytes], painnet_bundle) -> None:
    model = load_bundle(painnet_bundle[0], device="cpu")
    pipeline = TensorPipeline(model, get_detector("retinaface", device="cpu", runtime="torch"))
    assert pipeline.encode_crops is False  # on a CPU the cores are busy anyway: the worker encodes
    pipeline.encode_crops = True
    outcome = pipeline.run(frames[0])
    decoded = np.asarray(Image.open(io.BytesIO(outcome.crop_jpeg)), dtype=np.float32)
    assert decoded.shape == (224, 224, 3)
    assert np.abs(decoded - np.asarray(outcome.crop, dtype=np.float32)).mean() <= 3.0  # JPEG q90
