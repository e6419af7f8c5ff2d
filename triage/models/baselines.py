"""The per-neonate baseline of a model version: a bounded window of that baby's frame embeddings."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from triage.models.frames import ModelVersion
from triage.models.units import Neonate


class NeonateBaseline(models.Model):
    """The last ``window`` embeddings of a neonate's frames under one model version, and their median.

    Built by the worker from the neonate's frames (no label is read), kept across restarts, and
    rebuilt from the neonate's stored frames when the unit's model changes (embeddings of another
    model mean nothing to this one). Until it holds the model's ``min_frames`` there is no baseline
    (cold start) and predictions say so.
    """

    neonate = models.ForeignKey(Neonate, on_delete=models.CASCADE, related_name="baselines")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="neonate_baselines")
    statistic = models.CharField(max_length=20, default="median")
    dim = models.PositiveIntegerField()
    #: float32 rows, oldest first, at most the model's window.
    window = models.BinaryField()
    n_frames = models.PositiveIntegerField(default=0)
    #: float32 ``(dim,)`` median of the window; empty while ``n_frames`` < the model's ``min_frames``.
    value = models.BinaryField(blank=True, default=b"")
    digest = models.CharField(max_length=16, blank=True, help_text="Fingerprint of the value in force.")
    rebuilt_from_frames = models.PositiveIntegerField(
        default=0, help_text="Stored frames re-embedded when this baseline was (re)built for its model."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["neonate", "model_version"], name="baseline_unique_per_neonate_model")
        ]

    def __str__(self) -> str:
        return f"Baseline of neonate {self.neonate_id} for model {self.model_version_id}: {self.n_frames} frames"
