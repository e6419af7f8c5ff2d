"""Fixtures for the nurse UI tests: cases with real face crops, session clients for named people."""

from __future__ import annotations

import functools
import io
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from tests.factories import (
    FrameFactory,
    NeonateFactory,
    PredictionFactory,
    TriageCaseFactory,
    UserFactory,
)
from triage.models import Role


@functools.lru_cache(maxsize=1)
def face_png() -> bytes:
    """A small real face (scikit-image's astronaut, cropped to her face) as PNG, so the UI shows a picture."""
    from skimage import data

    image = Image.fromarray(data.astronaut()).crop((150, 20, 330, 200)).resize((112, 112))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_case(
    *,
    neonate,
    p_pain: float = 0.52,
    age_minutes: float = 5,
    model=None,
    crop: bool = True,
    threshold: float = 0.55,
    **case_kwargs,
):
    """A nurse-routed prediction and its open case (p_pain near 0.5 -> low confidence)."""
    created = timezone.now() - timedelta(minutes=age_minutes)
    frame = FrameFactory(neonate=neonate, captured_at=created)
    kwargs = {"frame": frame, "p_pain": p_pain, "threshold": threshold, "created_at": created}
    if model is not None:
        kwargs["model_version"] = model
    prediction = PredictionFactory(**kwargs)
    if crop:
        prediction.crop.save("crop.png", ContentFile(face_png()), save=True)
    return TriageCaseFactory(prediction=prediction, created_at=created, **case_kwargs)


@pytest.fixture
def neonate(unit):
    return NeonateFactory(mrn="MRN-N-001", bed="4", unit=unit)


@pytest.fixture
def other_neonate(other_unit):
    return NeonateFactory(mrn="MRN-S-001", bed="9", unit=other_unit)


@pytest.fixture
def case(neonate, model):
    return make_case(neonate=neonate, model=model)


@pytest.fixture
def other_case(other_neonate, model):
    return make_case(neonate=other_neonate, model=model)


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", role=Role.UNIT_ADMIN, unit=None, is_superuser=True, is_staff=True)
