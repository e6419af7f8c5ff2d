"""Units and their settings, people and roles, neonates, bedside cameras."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


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
    alert_escalation_minutes = models.PositiveIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(240)],
        help_text="An alert nobody acknowledged this long goes to the charge nurse.",
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
    stale_after_minutes = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="A frame captured longer ago than this is stale: queued after fresh frames, with a warning.",
    )
    device_offline_minutes = models.PositiveIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)], help_text="Camera silence = offline."
    )
    # Automatic pain alerts: at least k of the neonate's last n automatic verdicts within W s (issue 17).
    alert_rule_k = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1), MaxValueValidator(20)])
    alert_rule_n = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(20)])
    alert_rule_window_seconds = models.PositiveIntegerField(default=60, validators=[MinValueValidator(10), MaxValueValidator(3600)])
    # Lifetime of new API tokens (issue 18): cameras a year, people a shift.
    device_token_days = models.PositiveIntegerField(
        default=365, validators=[MinValueValidator(1), MaxValueValidator(3 * 365)], help_text="Camera token lifetime."
    )
    person_token_hours = models.PositiveIntegerField(
        default=12, validators=[MinValueValidator(1), MaxValueValidator(30 * 24)], help_text="Staff token lifetime."
    )
    bedside_window_minutes = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(120)],
        help_text="One observation at the cot also resolves the baby's open cases from frames this recent.",
    )
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
    is_charge_nurse = models.BooleanField(
        default=False, help_text="Receives the unit's escalated alerts (unacknowledged past the unit's escalation time)."
    )

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
    discharged_at = models.DateTimeField(null=True, blank=True, help_text="Set on discharge (active false).")

    class Meta:
        ordering = ["bed", "mrn"]
        indexes = [models.Index(fields=["unit", "active"])]
        constraints = [models.UniqueConstraint(fields=["unit", "mrn"], name="neonate_unique_mrn_per_unit")]

    def __str__(self) -> str:
        return f"{self.mrn} (bed {self.bed or '-'})"


class Device(models.Model):
    """A bedside camera. It authenticates as its own user (role device) with an ``ApiToken``."""

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
