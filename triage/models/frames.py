"""What a camera sends and what the models say: clips, frames, model versions, predictions."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from triage.models.units import Device, Neonate, Unit


def private_upload_name(prefix: str, suffix: str) -> str:
    """A server-generated storage name: the client's file name is never used (path traversal, PHI in names)."""
    now = timezone.now()
    return f"{prefix}/{now:%Y/%m/%d}/{uuid.uuid4().hex}{suffix}"


def frame_upload_to(instance: Frame, filename: str) -> str:
    return private_upload_name("frames", instance.storage_suffix())


def _derived_image_suffix(filename: str) -> str:
    """Suffix of a server-named derived image (``crop.jpg``); older rows and tests used ``.png``."""
    suffix = filename.rpartition(".")[2].lower() if "." in filename else ""
    return f".{suffix}" if suffix in {"jpg", "png"} else ".png"


def crop_upload_to(instance: Prediction, filename: str) -> str:
    return private_upload_name("crops", _derived_image_suffix(filename))


def saliency_upload_to(instance: Prediction, filename: str) -> str:
    return private_upload_name("saliency", _derived_image_suffix(filename))


def clip_upload_to(instance: Clip, filename: str) -> str:
    return private_upload_name("clips", instance.storage_suffix())



class Clip(models.Model):
    """A short video; keyframes are extracted on a worker and each becomes a Frame."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        DONE = "done"
        FAILED = "failed"

    neonate = models.ForeignKey(Neonate, on_delete=models.PROTECT, related_name="clips")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="clips")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    video = models.FileField(upload_to=clip_upload_to, max_length=200)
    extension = models.CharField(max_length=8, default=".mp4")
    sha256 = models.CharField(max_length=64, db_index=True)
    captured_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.TextField(blank=True)
    keyframe_count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"Clip {self.pk} of {self.neonate_id} [{self.status}]"

    def storage_suffix(self) -> str:
        return self.extension


class Frame(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        DONE = "done"
        NO_FACE = "no_face"
        FAILED = "failed"

    neonate = models.ForeignKey(Neonate, on_delete=models.PROTECT, related_name="frames")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="frames")
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="frames")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    clip = models.ForeignKey(Clip, null=True, blank=True, on_delete=models.SET_NULL, related_name="frames")
    clip_time_s = models.FloatField(null=True, blank=True)
    captured_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(default=timezone.now)
    # The stored file's hash (predictions carry it); the upload's own, before metadata was stripped,
    # for provenance (equal when the upload carried no metadata).
    sha256 = models.CharField(max_length=64)
    original_sha256 = models.CharField(max_length=64, blank=True, default="")
    image = models.FileField(upload_to=frame_upload_to, max_length=200)
    image_format = models.CharField(max_length=16)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    status_changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["neonate", "sha256"], name="frame_unique_image_per_neonate")]
        indexes = [
            models.Index(fields=["status", "status_changed_at"]),
            models.Index(fields=["neonate", "-captured_at"]),
            models.Index(fields=["unit", "-received_at"]),
        ]

    FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif", "MPO": ".jpg"}

    def __str__(self) -> str:
        return f"Frame {self.pk} of {self.neonate_id} [{self.status}]"

    def storage_suffix(self) -> str:
        return self.FORMAT_SUFFIX.get(self.image_format.upper(), ".img")


class ModelVersion(models.Model):
    """A registered model bundle (classifier) or detector weights file. Its sha256 is the weights hash."""

    class Kind(models.TextChoices):
        CLASSIFIER = "classifier"
        DETECTOR = "detector"

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        ACTIVE = "active"
        RETIRED = "retired"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CLASSIFIER)
    name = models.CharField(max_length=120)
    version = models.CharField(max_length=40)
    unit = models.ForeignKey(
        Unit, null=True, blank=True, on_delete=models.PROTECT, related_name="model_versions",
        help_text="Blank: serves every unit without a model of its own.",
    )
    bundle_path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    backbone = models.CharField(max_length=60, blank=True)
    architecture = models.CharField(max_length=40, blank=True)
    is_bootstrap = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "sha256", "unit"], name="modelversion_unique_hash"),
            models.UniqueConstraint(
                fields=["kind", "unit"], condition=Q(status="active"), name="modelversion_one_active_per_unit"
            ),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(status="active", unit__isnull=True), name="modelversion_one_active_global"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


class Prediction(models.Model):
    class Route(models.TextChoices):
        AUTO = "auto"
        NURSE = "nurse"

    class Label(models.TextChoices):
        PAIN = "pain"
        NONPAIN = "nonpain"

    frame = models.ForeignKey(Frame, on_delete=models.PROTECT, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    detector_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="detector_predictions"
    )
    detector_name = models.CharField(max_length=40, default="retinaface")
    p_pain = models.FloatField()
    label = models.CharField(max_length=10, choices=Label.choices)
    confidence = models.FloatField()
    threshold = models.FloatField(help_text="The unit's threshold in force when this was routed.")
    routed_to = models.CharField(max_length=8, choices=Route.choices)
    weights_sha256 = models.CharField(max_length=64)
    frame_sha256 = models.CharField(max_length=64)
    box_x = models.IntegerField()
    box_y = models.IntegerField()
    box_w = models.IntegerField()
    box_h = models.IntegerField()
    crop = models.FileField(upload_to=crop_upload_to, max_length=200, blank=True)
    saliency = models.FileField(upload_to=saliency_upload_to, max_length=200, blank=True)
    timings_ms = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    #: For a model that judges frames against the neonate's own resting face: whether a baseline
    #: was used (False: cold start, too few frames), which one (row + fingerprint of its value)
    #: and how many frames it held. All empty for a model without a baseline.
    baseline_used = models.BooleanField(default=False)
    baseline = models.ForeignKey(
        "triage.NeonateBaseline", null=True, blank=True, on_delete=models.SET_NULL, related_name="predictions"
    )
    baseline_digest = models.CharField(max_length=16, blank=True)
    baseline_frames = models.PositiveIntegerField(null=True, blank=True)
    #: A facial-action model's measures against the baby's baseline, largest change first:
    #: ``[{"action", "label", "change"}]`` with ``change`` signed towards pain (0.38 = 38% more).
    baseline_actions = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["frame", "model_version"], name="prediction_unique_per_frame_model")]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"Prediction {self.pk} of frame {self.frame_id}: {self.label} ({self.routed_to})"

    @property
    def box(self) -> list[int]:
        return [self.box_x, self.box_y, self.box_w, self.box_h]
