"""Nurse decisions: NIPS assessments (labels for retraining) and face-box corrections."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from annotations.observations import KIND_LABELS, METHOD_LABELS, NIPS_ITEMS, Kind, Method, nips_total

__all__ = ["NIPS_ITEMS", "FaceBoxCorrection", "NipsAssessment", "ScoreDisagreement"]


class NipsAssessment(models.Model):
    """One nurse's NIPS scoring of a triage case. Kept for audit; becomes a retraining label."""

    case = models.ForeignKey("triage.TriageCase", on_delete=models.PROTECT, related_name="assessments")
    nurse = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assessments")
    face = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(1)])
    cry = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(2)])
    breathing = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(1)])
    arms = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(1)])
    legs = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(1)])
    arousal = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(1)])
    intubated = models.BooleanField(default=False, help_text="Cry scored as a silent cry (intubated).")
    total = models.PositiveSmallIntegerField(null=True, blank=True)
    rule = models.CharField(max_length=20, help_text="The unit's NIPS pain rule in force, e.g. total>=3.")
    pain = models.BooleanField(null=True, blank=True)
    unable_to_assess = models.BooleanField(default=False)
    unable_reason = models.TextField(blank=True)
    note = models.TextField(blank=True)
    is_second_opinion = models.BooleanField(default=False)
    method = models.CharField(
        max_length=12,
        choices=[(m.value, METHOD_LABELS[m]) for m in Method],
        default=Method.UNRECORDED.value,
        help_text="How the baby was observed: at the cot, from video, from the image only (or not recorded).",
    )
    observed_at = models.DateTimeField(null=True, blank=True, help_text="When the baby was observed.")
    kind = models.CharField(
        max_length=10,
        choices=[(k.value, KIND_LABELS[k]) for k in Kind],
        default=Kind.NIPS.value,
        help_text="A full NIPS (all six items observed), a face-only review, or a partial observation.",
    )
    nurse_call = models.BooleanField(
        null=True, blank=True, help_text="The nurse's own pain / no pain call (needed when there is no NIPS total)."
    )
    bedside_source = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="bedside_copies",
        help_text="The bedside observation (on another case of the same baby) this assessment was copied from.",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["case", "nurse"], name="assessment_one_per_nurse_per_case")]

    def __str__(self) -> str:
        return f"NIPS {self.total} by {self.nurse_id} on case {self.case_id}"

    def items(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in NIPS_ITEMS}

    def compute_total(self) -> int | None:
        """The NIPS total of a complete observation; ``None`` for face-only, partial or unable."""
        if self.unable_to_assess:
            return None
        return nips_total(Method(self.method), self.items())

    @staticmethod
    def pain_by_rule(total: int | None, rule_threshold: int) -> bool | None:
        return None if total is None else total >= rule_threshold

    @property
    def is_face_only(self) -> bool:
        return self.kind == Kind.FACE_ONLY and not self.unable_to_assess

    @property
    def kind_label(self) -> str:
        return "unable to assess" if self.unable_to_assess else KIND_LABELS[Kind(self.kind)]

    @property
    def method_label(self) -> str:
        return METHOD_LABELS[Method(self.method)]


class FaceBoxCorrection(models.Model):
    """A nurse's corrected face box for a frame: training data for the unit's own face detector."""

    frame = models.ForeignKey("triage.Frame", on_delete=models.PROTECT, related_name="box_corrections")
    nurse = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    x = models.IntegerField()
    y = models.IntegerField()
    w = models.PositiveIntegerField()
    h = models.PositiveIntegerField()
    no_face = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Face box {self.pk} by {self.nurse_id} on frame {self.frame_id}"


class ScoreDisagreement(models.Model):
    """Two blind scores of a double-scored case that disagree on pain: flagged to the charge nurse (issue 13).

    Both verdicts are kept as scored (the case's final verdict stays "pain if either says pain");
    the flag waits until someone who did not score the case marks it reviewed.
    """

    case = models.OneToOneField("triage.TriageCase", on_delete=models.PROTECT, related_name="disagreement")
    unit = models.ForeignKey("triage.Unit", on_delete=models.PROTECT, related_name="+")
    first = models.ForeignKey(NipsAssessment, on_delete=models.PROTECT, related_name="+")
    second = models.ForeignKey(NipsAssessment, on_delete=models.PROTECT, related_name="+")
    flagged_at = models.DateTimeField(default=timezone.now)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    review_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-flagged_at"]
        indexes = [models.Index(fields=["unit", "reviewed_at", "-flagged_at"], name="disagreement_open")]

    def __str__(self) -> str:
        return f"Disagreement on case {self.case_id}{' (reviewed)' if self.reviewed_at else ''}"
