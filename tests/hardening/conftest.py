"""Fixtures for the hardening suite (issue 6): people of two units, their objects, real images and a real model.

The named people, their neonates, the ``model`` row and ``browser_for`` come from tests/conftest.py
(nurse, second_nurse, other_nurse, unit_admin, ml_engineer, device). Here: their unit's frame, clip,
case, assessment and alert, the
same objects in the other unit, and a small real model bundle (random-weight PainNet) so that
"accepted and processed" runs the real pipeline (RetinaFace + PainNet), not a stand-in.
"""

from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from tests.factories import (
    AlertFactory,
    DeviceFactory,
    FrameFactory,
    ModelVersionFactory,
    NipsAssessmentFactory,
    UserFactory,
)
from tests.support import save_painnet_bundle
from tests.ui.conftest import make_case
from triage.models import Clip, Role

PEOPLE = ("nurse", "other_nurse", "unit_admin", "ml_engineer", "device", "anonymous")


@functools.lru_cache(maxsize=1)
def astronaut(size: int = 256) -> Image.Image:
    """A real face (scikit-image's public-domain astronaut), downscaled so detection is cheap."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((size, size))


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def media_files(root) -> list[Path]:
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def media_root(settings) -> Path:
    return Path(settings.STORAGES["default"]["OPTIONS"]["location"])


@pytest.fixture
def person(request):
    """``person(name)`` -> the User behind a named person (the device fixture is a Device); None for anonymous."""

    def resolve(name: str):
        if name == "anonymous":
            return None
        value = request.getfixturevalue(name)
        return getattr(value, "user", value)

    return resolve


@pytest.fixture
def other_device(other_unit):
    return DeviceFactory(
        name="south-cam", unit=other_unit, user=UserFactory(username="cam-south", role=Role.DEVICE, unit=other_unit)
    )


@pytest.fixture
def small_clip_bytes() -> bytes:
    """Just enough of an MP4 to pass the container sniff (the worker would extract keyframes)."""
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


def _objects_of(*, neonate, device, model, nurse) -> dict:
    frame = FrameFactory(neonate=neonate, device=device, uploaded_by=device.user)
    clip = Clip(
        neonate=neonate,
        unit=neonate.unit,
        sha256=hashlib.sha256(f"{frame.pk}".encode()).hexdigest(),
        uploaded_by=device.user,
    )
    clip.video.save("x", ContentFile(b"\x00\x00\x00\x18ftypmp42"), save=True)
    case = make_case(neonate=neonate, model=model, crop=False)
    decided = make_case(neonate=neonate, model=model, status="decided", crop=False)
    assessment = NipsAssessmentFactory(case=decided, nurse=nurse)
    alert = AlertFactory(neonate=neonate)
    return {
        "neonate": neonate,
        "frame": frame,
        "clip": clip,
        "case": case,
        "decided_case": decided,
        "assessment": assessment,
        "alert": alert,
        "prediction": case.prediction,
        "unit": neonate.unit,
    }


@pytest.fixture
def make_north(unit, neonate, device, model, second_nurse, tmp_path):
    """``make_north()`` -> a fresh set of the nurse's unit's objects (frame, clip, cases, assessment, alert)
    and a candidate model to activate (any file works: activation only compares its sha256)."""
    from inference.bundle import sha256_file

    def make() -> dict:
        objects = _objects_of(neonate=neonate, device=device, model=model, nurse=second_nurse)
        bundle = tmp_path / f"bundle-{objects['frame'].pk}.pt"
        bundle.write_bytes(f"not loaded by activation, only hashed {bundle.name}".encode())
        objects["model"] = ModelVersionFactory(
            status="candidate", unit=None, bundle_path=str(bundle), sha256=sha256_file(bundle)
        )
        return objects

    return make


@pytest.fixture
def north(make_north) -> dict:
    return make_north()


@pytest.fixture
def with_saliency(north):
    """The nurse's unit's objects with a crop and a saliency map stored for the prediction."""
    from tests.ui.conftest import face_png

    north["prediction"].crop.save("c.png", ContentFile(face_png()), save=False)
    north["prediction"].saliency.save("s.png", ContentFile(face_png()), save=True)
    return north


@pytest.fixture
def south(other_unit, other_neonate, other_device, model, other_nurse) -> dict:
    return _objects_of(neonate=other_neonate, device=other_device, model=model, nurse=other_nurse)


# --- a real model -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def painnet_bundle(tmp_path_factory) -> Path:
    """A real, small PainNet bundle (MobileNetV2, random weights): cheap to build, real to run."""
    path = tmp_path_factory.mktemp("hardening-models") / "painnet-hardening.pt"
    save_painnet_bundle(path, seed=6, name="painnet-hardening", created_at="2025-01-01T00:00:00+00:00")
    return path


@pytest.fixture
def real_model(db, painnet_bundle, settings):
    """The bundle registered and active for every unit; saliency off (not what these tests measure)."""
    from triage import services

    settings.NEOPAIN_SALIENCY = False
    return services.model_version_register(bundle_path=painnet_bundle, status="active")


@pytest.fixture
def enqueued(monkeypatch) -> list:
    """Every ``frame_process``/``clip_process`` publish, recorded instead of sent to the broker."""
    from triage import tasks

    published: list = []

    def record(name):
        def apply_async(args=None, kwargs=None, **options):
            published.append((name, args, options))

        return apply_async

    monkeypatch.setattr(tasks.frame_process, "apply_async", record("frame_process"))
    monkeypatch.setattr(tasks.clip_process, "apply_async", record("clip_process"))
    return published
