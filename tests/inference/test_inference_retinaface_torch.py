"""RetinaFace on PyTorch against the ONNX Runtime detector, and choosing the runtime.

Agreement on the real-photo fixtures: the same faces, boxes within 2 px, scores within 0.01,
landmarks within 2 px; the CLI's verdicts with ``--detector-runtime torch`` equal onnx's.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageFilter

from inference.__main__ import main as cli_main
from inference.detect import RetinaFaceDetector, TorchRetinaFaceDetector, detector_runtime, get_detector
from inference.faces import FaceBox
from inference.retinaface_torch import RetinaFaceNet, load_onnx_weights
from tests.inference.inference_helpers import encode, on_canvas

BOX_PX = 2
SCORE = 0.01


@pytest.fixture(scope="module")
def onnx_detector() -> RetinaFaceDetector:
    return RetinaFaceDetector(device="cpu")


@pytest.fixture(scope="module")
def torch_detector() -> TorchRetinaFaceDetector:
    return TorchRetinaFaceDetector(device="cpu")


@pytest.fixture(scope="module")
def photos(astronaut: Image.Image, bedside_frame: Image.Image, no_face_image: Image.Image) -> list[Image.Image]:
    """Real-photo frames: portrait, bedside frame, a large frame (downscaled by both), a crowd, an empty cot."""
    head = astronaut.crop((147, 20, 302, 200))
    crowd = Image.new("RGB", (820, 460), (70, 70, 70))
    for (w, h), spot in zip([(96, 111), (155, 180), (232, 270)], [(30, 300), (250, 40), (520, 150)]):
        tile = head.resize((w, h))
        crowd.paste(tile.filter(ImageFilter.GaussianBlur(6)) if w == 232 else tile, spot)
    large = on_canvas(astronaut, (1280, 960), (600, 300))
    return [astronaut, bedside_frame, large, crowd, no_face_image, astronaut.convert("L")]


def assert_same_faces(got: list[FaceBox], want: list[FaceBox]) -> None:
    assert len(got) == len(want), (got, want)
    for a, b in zip(got, want):
        assert max(abs(p - q) for p, q in zip(a.as_tuple(), b.as_tuple())) <= BOX_PX, (a, b)
        assert abs(a.score - b.score) <= SCORE, (a, b)
        assert a.landmarks is not None and b.landmarks is not None
        for (ax, ay), (bx, by) in zip(a.landmarks, b.landmarks):
            assert abs(ax - bx) <= BOX_PX and abs(ay - by) <= BOX_PX


def test_torch_detector_agrees_with_onnx_on_real_photos(
    onnx_detector: RetinaFaceDetector, torch_detector: TorchRetinaFaceDetector, photos: list[Image.Image]
) -> None:
    found = 0
    for image in photos:
        want = onnx_detector.detect(image)
        assert_same_faces(torch_detector.detect(image), want)
        found += len(want)
    assert found >= 6  # portrait, bedside, large, three in the crowd, grey portrait: faces really compared


def test_a_mixed_size_batch_agrees_too(
    onnx_detector: RetinaFaceDetector, torch_detector: TorchRetinaFaceDetector, photos: list[Image.Image]
) -> None:
    batched = torch_detector.detect_batch(photos)
    for image, got in zip(photos, batched):
        assert_same_faces(got, onnx_detector.detect(image))


def test_detecting_on_tensors_scales_on_the_device_and_agrees(
    onnx_detector: RetinaFaceDetector, torch_detector: TorchRetinaFaceDetector, photos: list[Image.Image]
) -> None:
    import numpy as np

    tensors = [torch.from_numpy(np.asarray(p.convert("RGB")).copy()).permute(2, 0, 1) for p in photos]
    for image, got in zip(photos, torch_detector.detect_tensors(tensors)):
        assert_same_faces(got, onnx_detector.detect(image))


def test_weights_that_do_not_fit_the_module_are_refused() -> None:
    net = RetinaFaceNet()
    net.merge1 = torch.nn.Conv2d(64, 32, 3, padding=1)  # not the graph's 64 -> 64
    with pytest.raises(RuntimeError, match="conv 31"):
        load_onnx_weights(net)


def test_runtime_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEOPAIN_DETECTOR_RUNTIME", raising=False)
    assert detector_runtime(device="cpu") == "onnx"
    assert detector_runtime("torch", device="cpu") == "torch"
    monkeypatch.setenv("NEOPAIN_DETECTOR_RUNTIME", "torch")
    assert detector_runtime(device="cpu") == "torch"
    assert isinstance(get_detector("retinaface", device="cpu"), TorchRetinaFaceDetector)
    assert isinstance(get_detector("retinaface", device="cpu", runtime="onnx"), RetinaFaceDetector)
    monkeypatch.setenv("NEOPAIN_DETECTOR_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="unknown detector runtime 'tensorrt'"):
        detector_runtime(device="cpu")


def test_cli_verdicts_are_the_same_with_either_runtime(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys, photos: list[Image.Image], painnet_bundle
) -> None:
    monkeypatch.chdir(tmp_path)
    names = []
    for index, image in enumerate(photos):
        names.append(f"frame{index}.jpg")
        (tmp_path / names[-1]).write_bytes(encode(image.convert("RGB"), "JPEG", quality=92))
    verdicts = {}
    for runtime in ("onnx", "torch"):
        capsys.readouterr()
        args = [
            "predict",
            "--model",
            str(painnet_bundle[0]),
            "--device",
            "cpu",
            "--detector-runtime",
            runtime,
            "--json",
        ]
        assert cli_main([*args, *names]) == 0
        verdicts[runtime] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(verdicts["torch"]) == len(names)
    for onnx_row, torch_row in zip(verdicts["onnx"], verdicts["torch"]):
        assert torch_row["status"] == onnx_row["status"]
        assert torch_row.get("label") == onnx_row.get("label")
        if onnx_row["status"] == "ok":
            assert abs(torch_row["p_pain"] - onnx_row["p_pain"]) <= 0.01
            assert max(abs(a - b) for a, b in zip(torch_row["box"], onnx_row["box"])) <= BOX_PX
    assert sum(row["status"] == "ok" for row in verdicts["onnx"]) >= 4
