"""Fixtures for the platform tests: images, neonates, a fake pipeline and the real bootstrap bundle."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from tests.factories import ModelVersionFactory, UserFactory, png_bytes
from triage.models import Role


def astronaut_jpeg(*, angle: float = 0.0, quality: int = 90) -> bytes:
    """A real face (scikit-image's astronaut), JPEG-encoded; ``angle`` makes distinct bytes."""
    from skimage import data

    image = Image.fromarray(data.astronaut())
    if angle:
        image = image.rotate(angle)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def files_under(path: Path) -> list[Path]:
    return [p for p in Path(path).rglob("*") if p.is_file()] if Path(path).exists() else []


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", role=Role.ML_ENGINEER, unit=None, is_superuser=True, is_staff=True)


@pytest.fixture
def active_model(db):
    """A registered, active global classifier row (used with the fake pipeline)."""
    return ModelVersionFactory(name="painnet-test", version="1.0", unit=None)


def make_outcome(*, data: bytes, p_pain: float | None = None, status: str = "ok", reason: str = "", model=None):
    from inference.outcome import FrameOutcome

    sha = hashlib.sha256(data).hexdigest()
    if status != "ok":
        return FrameOutcome(status=status, reason=reason, frame_sha256=sha)
    label = "pain" if p_pain >= 0.5 else "nonpain"
    return FrameOutcome(
        status="ok",
        box=(4, 5, 30, 32),
        crop=Image.new("RGB", (224, 224), (120, 100, 90)),
        p_pain=p_pain,
        label=label,
        confidence=max(p_pain, 1 - p_pain),
        model_name=getattr(model, "name", "painnet-test"),
        model_version=getattr(model, "version", "1.0"),
        weights_sha256=getattr(model, "sha256", "0" * 64),
        frame_sha256=sha,
        timings_ms={"decode": 1.0, "detect": 2.0, "classify": 3.0},
    )


class FakePipeline:
    """Stands in for ``inference.pipeline.Pipeline``: p(pain) per image chosen by the test."""

    def __init__(self) -> None:
        self.p_pain = 0.9
        self.by_sha: dict[str, dict] = {}
        self.calls: list[int] = []
        self.model = None

    def set(self, data: bytes, **outcome) -> None:
        self.by_sha[hashlib.sha256(data).hexdigest()] = outcome

    def run_batch(self, images):
        self.calls.append(len(images))
        outcomes = []
        for data in images:
            spec = self.by_sha.get(hashlib.sha256(data).hexdigest(), {"p_pain": self.p_pain})
            outcomes.append(make_outcome(data=data, **spec))
        return outcomes


@pytest.fixture
def fake_pipeline(monkeypatch, settings):
    """Replace model loading with :class:`FakePipeline` (routing tests need exact probabilities)."""
    settings.NEOPAIN_SALIENCY = False
    pipeline = FakePipeline()
    monkeypatch.setattr("triage.services.worker._pipeline_for", lambda **kwargs: (pipeline, "retinaface"))
    return pipeline


@pytest.fixture
def upload_png():
    return png_bytes(size=(64, 48), seed=1)


@pytest.fixture(scope="session")
def bootstrap_bundle(tmp_path_factory) -> Path:
    """The real bootstrap bundle, built once per test session."""
    from inference.bootstrap import build_bootstrap_bundle

    path = tmp_path_factory.mktemp("models") / "bootstrap-fer-proxy.pt"
    build_bootstrap_bundle(path)
    return path


@pytest.fixture(scope="session")
def small_clip_bytes(tmp_path_factory) -> bytes:
    """A 2-second MP4 (astronaut, then a shifted astronaut) written with OpenCV."""
    import cv2
    import numpy as np
    from skimage import data

    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    frame = cv2.resize(frame, (256, 256))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (256, 256))
    for i in range(20):
        writer.write(frame if i < 10 else np.roll(frame, 40, axis=1))
    writer.release()
    return path.read_bytes()
