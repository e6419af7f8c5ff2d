"""The learning loop on the Django side: nurse decisions -> training set -> candidate -> comparison.

Pure ML lives in :mod:`inference.training` / :mod:`inference.thresholds`; the modules named
below adapt rows to it. This module retrains from nurse assessments and registers the
result as a candidate (through the platform's ``model_version_register``); it also
re-exports the loop's public names, so callers keep importing them from here:

* :mod:`annotations.nurse_labels`: labels from decided cases, the neonate's pseudonym.
* :mod:`annotations.training_sets`: the exported PainNet crops and the detector's samples.
* :mod:`annotations.agreement`: Cohen's kappa per model version.
* :mod:`annotations.model_metrics`: the unit's targets; a model's stored threshold figures.
* :mod:`annotations.model_comparison`: candidate vs active on the same held-out labels.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

from annotations.agreement import agreement_by_model_version
from annotations.model_comparison import model_comparison_store, models_compare
from annotations.model_metrics import (
    DEFAULT_ALPHA,
    THRESHOLD_METRIC_KEYS,
    model_metrics_store,
    unit_alpha,
    unit_threshold,
)
from annotations.nurse_labels import NurseLabel, case_label, labels_since, nurse_labels, subject_pseudonym
from annotations.training_sets import audit_flags, detector_samples, training_set_export
from triage.models import ModelVersion, Unit, User

__all__ = [
    "DEFAULT_ALPHA",
    "RETRAIN_ENV",
    "THRESHOLD_METRIC_KEYS",
    "NurseLabel",
    "agreement_by_model_version",
    "audit_flags",
    "case_label",
    "detector_samples",
    "labels_since",
    "model_comparison_store",
    "model_metrics_store",
    "models_compare",
    "nurse_labels",
    "retrain_from_assessments",
    "retrain_if_due",
    "subject_pseudonym",
    "training_set_export",
    "unit_alpha",
    "unit_threshold",
]

logger = logging.getLogger(__name__)

RETRAIN_ENV = "NEOPAIN_RETRAIN_EVERY_N_LABELS"


def retrain_from_assessments(
    *,
    unit: Unit | None,
    config: Any = None,
    out: str | os.PathLike[str] | None = None,
    actor: User | None = None,
    progress: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[ModelVersion, dict[str, Any]]:
    """Export the unit's nurse labels, train a PainNet on them and register it as a candidate.

    Returns ``(model_version, metrics)``. Activation stays a person's decision
    (``model_version_activate``).
    """
    from inference import training as tr
    from triage.services import model_version_register

    config = config or tr.TrainConfig()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    scope = unit.code if unit else "all"
    with tempfile.TemporaryDirectory(prefix="neopain-export-") as tmp:
        summary = training_set_export(unit=unit, out_dir=tmp)
        logger.info(
            "retraining %s on %s labels; labels by source %s; by observation method %s",
            scope,
            summary["label_source"],
            summary["label_sources"],
            summary["methods"],
        )
        if summary["n_images"] == 0:
            raise tr.DatasetError(f"no usable nurse-labelled frames for {scope} (excluded: {summary['excluded']})")
        images = tr.dataset_read(tmp)
        crops = tr.face_crops(images, settings=tr.CropSettings(detector="none"), cache_dir=cache_dir, progress=progress)
        dataset = {
            **tr.dataset_summary(crops.images),
            "source": "nurse assessments",
            "unit": unit.code if unit else None,
            "excluded": summary["excluded"],
            "label_source": summary["label_source"],
            "label_sources": summary["label_sources"],
        }
        dataset.pop("per_subject", None)
        trained = tr.train_model(
            crops,
            config=config,
            alpha=unit_alpha(unit),
            progress=progress,
            dataset=dataset,
            audit=audit_flags(tmp, crops.images),
        )
    target = Path(out) if out else Path(settings.MODELS_DIR) / f"painnet-{scope}-{config.backbone}-{stamp}.pt"
    tr.bundle_write(trained, target, name=f"painnet-{scope}", version=stamp)
    model_version = model_version_register(bundle_path=target, unit=unit, actor=actor, metrics=trained.metrics)
    return model_version, trained.metrics


def retrain_if_due(*, unit: Unit, every_n: int) -> ModelVersion | None:
    """Retrain ``unit``'s model when ``every_n`` new usable labels arrived since its newest model."""
    latest = ModelVersion.objects.filter(kind=ModelVersion.Kind.CLASSIFIER, unit=unit).order_by("-created_at").first()
    new_labels = labels_since(unit=unit, since=latest.created_at if latest else None)
    if new_labels < every_n:
        logger.info("unit %s: %d new labels, retraining at %d", unit.code, new_labels, every_n)
        return None
    logger.info("unit %s: %d new labels, retraining", unit.code, new_labels)
    model_version, _ = retrain_from_assessments(unit=unit)
    return model_version
