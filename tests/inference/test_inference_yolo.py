"""YOLO backend on a tiny detector this test trains offline from ``yolov8n.yaml``.

The model is trained for one epoch on eight generated 128 px images, so its boxes are
meaningless; the test checks the plumbing: offline load of an operator ``.pt``, FaceBox
output in image pixels, batching, the pipeline on top, and that ultralytics wrote
nothing outside the test's temp folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inference.detect import FaceBox, YoloDetector, get_detector
from tests.inference.inference_helpers import REPO_ROOT


def _make_dataset(root: Path, count: int = 8) -> Path:
    rng = np.random.default_rng(0)
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(count):
        image = Image.new("RGB", (128, 128), tuple(int(v) for v in rng.integers(0, 80, 3)))
        cx, cy = (int(v) for v in rng.integers(40, 88, 2))
        r = int(rng.integers(18, 30))
        ImageDraw.Draw(image).ellipse((cx - r, cy - 1.2 * r, cx + r, cy + 1.2 * r), fill=(220, 180, 150))
        image.save(images / f"{i}.jpg")
        (labels / f"{i}.txt").write_text(f"0 {cx / 128:.4f} {cy / 128:.4f} {2 * r / 128:.4f} {2.4 * r / 128:.4f}\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n  0: face\n")
    return data


@pytest.fixture(scope="module")
def trained_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inference.detect import import_ultralytics_offline

    repo_before = set(os.listdir(REPO_ROOT))
    cwd_before = set(os.listdir(os.getcwd()))
    root = tmp_path_factory.mktemp("yolo")
    data = _make_dataset(root / "dataset")
    ultralytics = import_ultralytics_offline()
    model = ultralytics.YOLO("yolov8n.yaml")
    model.train(
        data=str(data),
        epochs=1,
        imgsz=64,
        batch=4,
        workers=0,
        device="cpu",
        amp=False,
        plots=False,
        val=False,
        project=str(root / "runs"),
        name="face",
        exist_ok=True,
        verbose=False,
    )
    weights = root / "runs" / "face" / "weights" / "last.pt"
    assert weights.is_file()
    # Other processes may touch the repo meanwhile: look for what ultralytics would leave.
    for folder, before in ((REPO_ROOT, repo_before), (Path.cwd(), cwd_before)):
        new = set(os.listdir(folder)) - before
        assert not [n for n in new if n in {"runs", "datasets", "weights"} or n.endswith((".pt", ".ttf"))], new
    # ultralytics fixes its settings folder when first imported (maybe by another test module):
    # wherever that was, it is the app's data dir or a temp dir, never the repo or $HOME.
    from ultralytics.utils import SETTINGS_FILE

    settings_file = Path(SETTINGS_FILE).resolve()
    assert settings_file.is_file()
    assert not settings_file.is_relative_to(REPO_ROOT) and not settings_file.is_relative_to(Path.home()), settings_file
    return weights


def test_it_loads_operator_weights_and_returns_faceboxes(trained_weights: Path) -> None:
    detector = YoloDetector(trained_weights, score_threshold=0.0001, imgsz=64)
    image = Image.new("RGB", (320, 200), (40, 40, 40))
    ImageDraw.Draw(image).ellipse((120, 40, 200, 150), fill=(220, 180, 150))
    boxes = detector.detect(image)
    assert isinstance(boxes, list)
    assert all(isinstance(b, FaceBox) for b in boxes)
    for box in boxes:
        assert box.x >= 0 and box.y >= 0 and box.x + box.w <= 320 and box.y + box.h <= 200
        assert 0.0 < box.score <= 1.0
    assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)
    batched = detector.detect_batch([image, image.resize((160, 100))])
    assert len(batched) == 2
    assert [b.as_tuple() for b in batched[0]] == [b.as_tuple() for b in boxes]


def test_get_detector_yolo_is_cached_per_weights(trained_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_detector("yolo", weights=trained_weights)
    assert isinstance(first, YoloDetector)
    assert get_detector("yolo", weights=str(trained_weights)) is first
    monkeypatch.setenv("NEOPAIN_YOLO_WEIGHTS", str(trained_weights))
    assert get_detector("yolo") is first


def test_pipeline_runs_on_the_yolo_backend(
    trained_weights: Path, bootstrap_bundle: tuple[Path, str], bedside_jpeg: bytes
) -> None:
    from inference.pipeline import get_pipeline

    pipeline = get_pipeline(bootstrap_bundle[0], detector="yolo", detector_weights=trained_weights)
    assert pipeline.detector.name == "yolo"
    outcomes = pipeline.run_batch([bedside_jpeg, b"junk"])
    assert outcomes[0].status in {"ok", "no_face"}
    assert outcomes[1].status == "unreadable"


def test_missing_weights_never_trigger_a_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        YoloDetector("yolov8n.pt")  # ultralytics would fetch this name from the internet
    assert not Path("yolov8n.pt").exists()
    with pytest.raises(FileNotFoundError):
        YoloDetector(tmp_path / "absent.pt")


def test_a_model_without_a_face_class_is_refused(trained_weights: Path) -> None:
    with pytest.raises(ValueError, match="no 'person' class"):
        YoloDetector(trained_weights, face_class="person")
