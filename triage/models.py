"""Core data model: units, people, neonates, cameras, frames, predictions, cases, alerts, audit."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


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


class Unit(models.Model):
    """A ward (NICU). Everything a nurse sees is scoped to her unit."""

    name = models.CharField(max_length=120, unique=True)
    code = models.SlugField(max_length=40, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class UnitSettings(models.Model):
    """Per-unit triage policy. Defaults follow the paper (threshold 0.55, NIPS total >= 3 is pain)."""

    unit = models.OneToOneField(Unit, on_delete=models.CASCADE, related_name="settings")
    threshold = models.FloatField(
        default=0.55,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="Confidence (probability of the predicted class) at or above which the verdict is automatic.",
    )
    nips_pain_threshold = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(7)],
        help_text="A NIPS total at or above this is pain.",
    )
    alert_cooldown_minutes = models.PositiveIntegerField(
        default=10, validators=[MaxValueValidator(24 * 60)], help_text="One alert per neonate per episode."
    )
    claim_timeout_minutes = models.PositiveIntegerField(default=15, validators=[MinValueValidator(1), MaxValueValidator(240)])
    double_scoring_share = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of nurse cases scored blind by two nurses (agreement audit).",
    )
    missed_pain_target = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.001), MaxValueValidator(0.5)],
        help_text=(
            "alpha of the guaranteed threshold: expected missed pain among ALL frames (conformal risk control); "
            "the rate among automatic verdicts is higher and is shown beside it."
        ),
    )
    audit_share = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=(
            "Random share of automatic verdicts also sent to a nurse as a blind audit case (the nurse does not "
            "see the model's verdict): unbiased labels for calibration and live accuracy."
        ),
    )
    keyframe_period_s = models.FloatField(
        default=5.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(600.0)],
        help_text="A clip yields at least one keyframe this often (seconds; 0 = only at changes).",
    )
    device_offline_minutes = models.PositiveIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)], help_text="Camera silence = offline."
    )
    # Automatic pain alerts: at least k of the neonate's last n automatic verdicts within W s (issue 17).
    alert_rule_k = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1), MaxValueValidator(20)])
    alert_rule_n = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(20)])
    alert_rule_window_seconds = models.PositiveIntegerField(default=60, validators=[MinValueValidator(10), MaxValueValidator(3600)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "unit settings"

    def __str__(self) -> str:
        return f"Settings for {self.unit}"

    def clean(self) -> None:
        if self.alert_rule_k > self.alert_rule_n:
            raise ValidationError({"alert_rule_k": ["k (pain verdicts) cannot exceed n (verdicts looked at)."]})

    @property
    def nips_rule(self) -> str:
        return f"total>={self.nips_pain_threshold}"


class Role(models.TextChoices):
    NURSE = "nurse", "Nurse"
    UNIT_ADMIN = "unit_admin", "Unit admin"
    ML_ENGINEER = "ml_engineer", "ML engineer"
    DEVICE = "device", "Bedside device"


class User(AbstractUser):
    """A person or a bedside device account. Role and unit drive every server-side check."""

    role = models.CharField(max_length=20, choices=Role.choices, default=Role.NURSE)
    unit = models.ForeignKey(Unit, null=True, blank=True, on_delete=models.PROTECT, related_name="users")

    def is_role(self, *roles: str) -> bool:
        return self.is_active and self.role in roles

    @property
    def is_nurse(self) -> bool:
        return self.is_role(Role.NURSE)

    @property
    def is_unit_admin(self) -> bool:
        return self.is_role(Role.UNIT_ADMIN)

    @property
    def is_ml_engineer(self) -> bool:
        return self.is_role(Role.ML_ENGINEER)

    @property
    def is_device(self) -> bool:
        return self.is_role(Role.DEVICE)


class Neonate(models.Model):
    # Unique per unit, not hospital-wide: a hospital-wide check told unit B that unit A has the MRN.
    mrn = models.CharField("MRN", max_length=64, db_index=True)
    bed = models.CharField(max_length=32, blank=True)
    gestational_age_weeks = models.DecimalField(
        max_digits=4, decimal_places=1, null=True, blank=True, validators=[MinValueValidator(20), MaxValueValidator(45)]
    )
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="neonates")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["bed", "mrn"]
        indexes = [models.Index(fields=["unit", "active"])]
        constraints = [models.UniqueConstraint(fields=["unit", "mrn"], name="neonate_unique_mrn_per_unit")]

    def __str__(self) -> str:
        return f"{self.mrn} (bed {self.bed or '-'})"


class Device(models.Model):
    """A bedside camera. It authenticates as its own user (role device) with a DRF token."""

    name = models.CharField(max_length=80)
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="devices")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="device")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Device health, from the bedside agent's heartbeat (python -m bedside): issue 17.
    neonate = models.ForeignKey(
        "Neonate", null=True, blank=True, on_delete=models.SET_NULL, related_name="cameras", help_text="Watched now."
    )
    agent_version = models.CharField(max_length=32, blank=True)
    spool_backlog = models.PositiveIntegerField(null=True, blank=True, help_text="Keyframes waiting on the camera.")
    health_reported_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.unit})"


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

    class Meta:
        constraints = [models.UniqueConstraint(fields=["frame", "model_version"], name="prediction_unique_per_frame_model")]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"Prediction {self.pk} of frame {self.frame_id}: {self.label} ({self.routed_to})"

    @property
    def box(self) -> list[int]:
        return [self.box_x, self.box_y, self.box_w, self.box_h]


class TriageCase(models.Model):
    """A prediction below the unit's threshold, waiting for a nurse's NIPS assessment."""

    class Status(models.TextChoices):
        OPEN = "open"
        CLAIMED = "claimed"
        DECIDED = "decided"

    prediction = models.OneToOneField(Prediction, on_delete=models.PROTECT, related_name="case")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="cases")
    neonate = models.ForeignKey(Neonate, on_delete=models.PROTECT, related_name="cases")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # Copied from the prediction so the queue sorts on an index of this table alone.
    confidence = models.FloatField()
    p_pain = models.FloatField(default=0.5, help_text="The model's p(pain), copied: the queue puts likely pain first.")
    is_audit = models.BooleanField(
        default=False,
        help_text="A random automatic verdict sent to a nurse blind (she does not see the model's verdict).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    assessments_required = models.PositiveSmallIntegerField(default=1)
    decided_at = models.DateTimeField(null=True, blank=True)
    final_pain = models.BooleanField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["unit", "status", "confidence", "created_at"], name="case_queue_order"),
            # The open queue in its exact order (pain first): a nurse's first page reads ~50 index
            # entries, not every open case of the unit (scripts/bench_queue.py, 1M predictions).
            models.Index(
                "unit",
                F("p_pain").desc(),
                "created_at",
                "id",
                condition=Q(status__in=["open", "claimed"]),
                name="case_queue_open_pain",
            ),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} [{self.status}]"

    def claim_is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return bool(self.claimed_by_id and self.claim_expires_at and self.claim_expires_at > now)


class Alert(models.Model):
    """A call to the pain-management team. Repeats inside the cooldown are counted, not re-alerted."""

    class Source(models.TextChoices):
        AUTO = "auto"
        NURSE = "nurse"

    neonate = models.ForeignKey(Neonate, on_delete=models.PROTECT, related_name="alerts")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="alerts")
    source = models.CharField(max_length=8, choices=Source.choices)
    prediction = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts")
    assessment = models.ForeignKey(
        "annotations.NipsAssessment", null=True, blank=True, on_delete=models.PROTECT, related_name="alerts"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_event_at = models.DateTimeField(default=timezone.now)
    suppressed_count = models.PositiveIntegerField(default=0)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    ack_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["unit", "acknowledged_at", "-created_at"]), models.Index(fields=["neonate", "-last_event_at"])]

    def __str__(self) -> str:
        return f"Alert {self.pk} for {self.neonate_id} ({self.source})"

    def in_cooldown(self, at, cooldown: timedelta) -> bool:
        return at - self.last_event_at < cooldown


class AppendOnlyQuerySet(models.QuerySet):
    """Bulk update/delete would bypass ``AuditEvent.save``/``delete``: refuse them too."""

    def update(self, **kwargs):
        raise AuditEvent.AppendOnly("Audit events cannot be changed.")

    def delete(self):
        raise AuditEvent.AppendOnly("Audit events cannot be deleted.")

    # What bulk_update() and the deletion collector call underneath update() and delete().
    def _update(self, values):
        raise AuditEvent.AppendOnly("Audit events cannot be changed.")

    def _raw_delete(self, using=None):
        raise AuditEvent.AppendOnly("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    """Append-only record of who did what. A database trigger enforces it; the ORM refuses too."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # No FK constraints: deleting a user or unit must never rewrite history.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    unit = models.ForeignKey(Unit, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["unit", "-created_at"])]

    class AppendOnly(Exception):
        pass

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_username} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise AuditEvent.AppendOnly("Audit events cannot be changed.")
        kwargs["force_insert"] = True
        return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditEvent.AppendOnly("Audit events cannot be deleted.")


def _sync_role_group(sender, instance: User, **kwargs) -> None:
    """Keep the user's auth Group in step with their role (Django permissions follow the role)."""
    from django.contrib.auth.models import Group

    role_names = [r.value for r in Role]
    current = set(instance.groups.filter(name__in=role_names).values_list("name", flat=True))
    if current == {instance.role}:
        return
    instance.groups.remove(*Group.objects.filter(name__in=role_names).exclude(name=instance.role))
    group = Group.objects.filter(name=instance.role).first()
    if group is not None:
        instance.groups.add(group)


models.signals.post_save.connect(_sync_role_group, sender=User, dispatch_uid="triage_sync_role_group")
