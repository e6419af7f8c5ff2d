"""The frame pipeline: ordering, outcomes for every kind of input, one batched forward."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from inference.bundle import BundleError, LoadedModel, load_bundle
from inference.detect import FaceBox, get_detector
from inference.outcome import FrameOutcome
from inference.pipeline import Pipeline, get_pipeline
from tests.inference.inference_helpers import encode, exif_rotated_jpeg


@pytest.fixture(scope="module")
def model(painnet_bundle: tuple[Path, str]) -> LoadedModel:
    return load_bundle(painnet_bundle[0], expected_sha256=painnet_bundle[1])


@pytest.fixture(scope="module")
def pipeline(model: LoadedModel) -> Pipeline:
    return Pipeline(model, get_detector("retinaface"))


def test_a_mixed_batch_keeps_order_and_never_raises(
    pipeline: Pipeline, bedside_jpeg: bytes, no_face_png: bytes, painnet_bundle: tuple[Path, str]
) -> None:
    inputs = [bedside_jpeg, b"", no_face_png, b"GIF89a broken", bedside_jpeg[:3000], bedside_jpeg]
    outcomes = pipeline.run_batch(inputs)
    assert [o.status for o in outcomes] == ["ok", "unreadable", "no_face", "unreadable", "unreadable", "ok"]
    assert outcomes[1].reason == "empty file"
    assert outcomes[2].reason == "no face detected"
    assert "truncated" in outcomes[4].reason
    for data, outcome in zip(inputs, outcomes):
        assert outcome.frame_sha256 == hashlib.sha256(data).hexdigest()
        assert outcome.model_name == "test-painnet" and outcome.model_version == "0.0.1"
        assert outcome.weights_sha256 == painnet_bundle[1]
        assert set(outcome.timings_ms) == {"decode", "detect", "classify"}
    assert outcomes[0].p_pain == pytest.approx(outcomes[5].p_pain, abs=1e-6)
    for bad in (outcomes[1], outcomes[2]):
        assert bad.box is None and bad.crop is None and bad.p_pain is None and bad.label is None


def test_an_ok_outcome_is_complete_and_consistent(pipeline: Pipeline, bedside_jpeg: bytes) -> None:
    outcome = pipeline.run(bedside_jpeg)
    assert outcome.status == "ok" and outcome.reason == ""
    assert outcome.crop is not None and outcome.crop.size == (224, 224) and outcome.crop.mode == "RGB"
    assert outcome.p_pain is not None and 0.0 <= outcome.p_pain <= 1.0
    assert outcome.label == ("pain" if outcome.p_pain >= 0.5 else "nonpain")
    assert outcome.confidence == pytest.approx(max(outcome.p_pain, 1 - outcome.p_pain))
    x, y, w, h = outcome.box  # type: ignore[misc]
    # The astronaut's face is pasted at (200, 60) scaled by 0.75: around (333, 102, 71, 90).
    assert 290 <= x <= 333 and 60 <= y <= 102 and 71 <= w <= 110 and 90 <= h <= 130
    assert outcome.face_score is not None and outcome.face_score > 0.9
    assert all(v >= 0 for v in outcome.timings_ms.values()) and outcome.timings_ms["detect"] > 0
    as_json = outcome.to_json_dict(file="bed1.jpg")
    assert list(as_json)[:4] == ["file", "status", "reason", "box"]
    assert as_json["box"] == list(outcome.box)  # type: ignore[arg-type]
    assert as_json["model"] == {"name": "test-painnet", "version": "0.0.1"}
    for key in ("p_pain", "label", "confidence", "weights_sha256", "frame_sha256", "timings_ms"):
        assert key in as_json


def test_exif_rotated_upload_gets_a_box_in_the_displayed_frame(
    pipeline: Pipeline, bedside_frame: Image.Image, bedside_jpeg: bytes
) -> None:
    upright, rotated = pipeline.run_batch([bedside_jpeg, exif_rotated_jpeg(bedside_frame)])
    assert upright.status == rotated.status == "ok"
    assert all(abs(a - b) <= 6 for a, b in zip(upright.box, rotated.box))  # type: ignore[arg-type]


def test_the_classifier_runs_once_per_batch(model: LoadedModel, bedside_frame: Image.Image) -> None:
    calls: list[int] = []
    # The head: it runs in PyTorch whichever runtime serves the trunk (inference/trunk_runtime.py).
    handle = model.module.head.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    try:
        frames = [encode(bedside_frame.rotate(angle), "JPEG") for angle in (0, 3, 6, 9, 12)]
        outcomes = Pipeline(model, get_detector("retinaface")).run_batch(frames)
    finally:
        handle.remove()
    assert [o.status for o in outcomes] == ["ok"] * 5
    assert calls == [5]


class _BrokenDetector:
    name = "broken"

    def detect(self, image: Image.Image) -> list[FaceBox]:
        raise RuntimeError("camera driver exploded")

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[FaceBox]]:
        raise RuntimeError("camera driver exploded")


def test_a_failing_detector_costs_frames_not_the_batch(model: LoadedModel, bedside_jpeg: bytes) -> None:
    outcomes = Pipeline(model, _BrokenDetector()).run_batch([bedside_jpeg, b""])
    assert outcomes[0].status == "no_face"
    assert "face detection failed" in outcomes[0].reason
    assert outcomes[1].status == "unreadable"


def test_pipeline_respects_its_caps(model: LoadedModel, bedside_jpeg: bytes) -> None:
    small = Pipeline(model, get_detector("retinaface"), max_pixels=1000)
    (outcome,) = small.run_batch([bedside_jpeg])
    assert outcome.status == "unreadable" and "pixel limit" in outcome.reason


def test_get_pipeline_is_cached_and_checks_the_hash(painnet_bundle: tuple[Path, str]) -> None:
    path, sha = painnet_bundle
    first = get_pipeline(path, expected_sha256=sha)
    assert get_pipeline(path, expected_sha256=sha) is first
    assert get_pipeline(path) is first
    assert first.model.device.type == "cpu"
    with pytest.raises(BundleError):
        get_pipeline(path, expected_sha256="f" * 64)


def test_outcome_defaults() -> None:
    outcome = FrameOutcome(status="unreadable", reason="file not found")
    assert outcome.to_json_dict()["timings_ms"] == {"decode": 0.0, "detect": 0.0, "classify": 0.0}
    assert not outcome.is_ok
