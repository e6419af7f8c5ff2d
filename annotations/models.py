"""Nurse decisions: NIPS assessments (labels for retraining) and face-box corrections."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

NIPS_ITEMS: dict[str, int] = {"face": 1, "cry": 2, "breathing": 1, "arms": 1, "legs": 1, "arousal": 1}
"""NIPS items and their maximum score (Lawrence et al. 1993); total 0-7."""


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
        if self.unable_to_assess:
            return None
        return sum(int(v or 0) for v in self.items().values())

    @staticmethod
    def pain_by_rule(total: int | None, rule_threshold: int) -> bool | None:
        return None if total is None else total >= rule_threshold


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
