"""factory_boy factories for the whole project (one place, so every test builds rows the same way)."""

from __future__ import annotations

import hashlib
import io
import secrets
from datetime import timedelta

import factory
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from annotations.models import NipsAssessment
from triage.models import (
    TOKEN_PREFIX_LENGTH,
    Alert,
    ApiToken,
    Device,
    Frame,
    ModelVersion,
    Neonate,
    Prediction,
    Role,
    TriageCase,
    Unit,
    UnitSettings,
    User,
    token_digest,
)

TEST_PASSWORD = "correct-horse-battery-staple"


def png_bytes(size=(64, 48), colour=(200, 120, 90), seed: int = 0) -> bytes:
    """A small, valid PNG; ``seed`` varies one pixel so hashes differ."""
    image = Image.new("RGB", size, colour)
    image.putpixel((seed % size[0], (seed // size[0]) % size[1]), (seed % 256, 7, 11))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class UnitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Unit
        django_get_or_create = ("code",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"NICU {n}")
    code = factory.Sequence(lambda n: f"nicu-{n}")

    @factory.post_generation
    def with_settings(obj, create, extracted, **kwargs):
        if create:
            UnitSettings.objects.get_or_create(unit=obj)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    role = Role.NURSE
    unit = factory.SubFactory(UnitFactory)
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class NeonateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Neonate

    mrn = factory.Sequence(lambda n: f"MRN{100000 + n}")
    bed = factory.Sequence(lambda n: f"B{n % 30 + 1:02d}")
    gestational_age_weeks = 32
    unit = factory.SubFactory(UnitFactory)


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    name = factory.Sequence(lambda n: f"cam-{n}")
    unit = factory.SubFactory(UnitFactory)
    user = factory.SubFactory(UserFactory, role=Role.DEVICE, unit=factory.SelfAttribute("..unit"))


def api_token_for(user, *, expires_in: timedelta | None = None, **fields) -> str:
    """A new live API token for ``user``; returns the raw key (``Authorization: Token <key>``).

    Written straight to the table (no audit row, so tests counting audit rows are not disturbed);
    ``expires_in`` defaults to a day, ``fields`` set anything else (``revoked_at=...``)."""
    key = secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=user,
        kind=ApiToken.Kind.DEVICE if user.role == Role.DEVICE else ApiToken.Kind.PERSON,
        prefix=key[:TOKEN_PREFIX_LENGTH],
        digest=token_digest(key),
        expires_at=timezone.now() + (expires_in if expires_in is not None else timedelta(days=1)),
        **fields,
    )
    return key


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A registered classifier row. Tests that run inference register a real bundle instead."""

    class Meta:
        model = ModelVersion

    name = "painnet-test"
    version = factory.Sequence(lambda n: f"0.{n}")
    bundle_path = "/nonexistent/test-bundle.pt"
    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"bundle-{n}".encode()).hexdigest())
    backbone = "mobilenet_v2"
    architecture = "painnet"
    status = ModelVersion.Status.ACTIVE


class FrameFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Frame

    class Params:
        content = factory.Sequence(lambda n: png_bytes(seed=n))

    neonate = factory.SubFactory(NeonateFactory)
    unit = factory.SelfAttribute("neonate.unit")
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.content).hexdigest())
    image = factory.LazyAttribute(lambda o: ContentFile(o.content, name="frame.png"))
    image_format = "PNG"
    width = 64
    height = 48
    size_bytes = factory.LazyAttribute(lambda o: len(o.content))
    status = Frame.Status.DONE
    captured_at = factory.LazyFunction(timezone.now)


class PredictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prediction

    frame = factory.SubFactory(FrameFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    p_pain = 0.52
    label = factory.LazyAttribute(lambda o: "pain" if o.p_pain >= 0.5 else "nonpain")
    confidence = factory.LazyAttribute(lambda o: max(o.p_pain, 1 - o.p_pain))
    threshold = 0.55
    routed_to = factory.LazyAttribute(lambda o: "auto" if o.confidence >= o.threshold else "nurse")
    weights_sha256 = factory.LazyAttribute(lambda o: o.model_version.sha256)
    frame_sha256 = factory.LazyAttribute(lambda o: o.frame.sha256)
    box_x = 4
    box_y = 4
    box_w = 40
    box_h = 36
    timings_ms = factory.LazyFunction(lambda: {"decode": 1.0, "detect": 10.0, "classify": 5.0})


class TriageCaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TriageCase

    prediction = factory.SubFactory(PredictionFactory)
    unit = factory.SelfAttribute("prediction.frame.unit")
    neonate = factory.SelfAttribute("prediction.frame.neonate")
    confidence = factory.SelfAttribute("prediction.confidence")
    p_pain = factory.SelfAttribute("prediction.p_pain")
    captured_at = factory.SelfAttribute("prediction.frame.captured_at")
    status = TriageCase.Status.OPEN


class NipsAssessmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NipsAssessment

    case = factory.SubFactory(TriageCaseFactory)
    nurse = factory.SubFactory(UserFactory, unit=factory.SelfAttribute("..case.unit"))
    face = 1
    cry = 2
    breathing = 0
    arms = 1
    legs = 0
    arousal = 1
    total = 5
    rule = "total>=3"
    pain = True


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    neonate = factory.SubFactory(NeonateFactory)
    unit = factory.SelfAttribute("neonate.unit")
    source = Alert.Source.AUTO
