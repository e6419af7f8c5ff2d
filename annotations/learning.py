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

import dataclasses
import datetime as dt
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

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
    "RETRAIN_FEATURES",
    "RETRAIN_FEATURES_DEFAULT",
    "RETRAIN_FEATURES_ENV",
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
    "retrain_features",
    "retrain_from_assessments",
    "retrain_if_due",
    "subject_pseudonym",
    "training_set_export",
    "unit_alpha",
    "unit_threshold",
]

logger = logging.getLogger(__name__)

RETRAIN_ENV = "NEOPAIN_RETRAIN_EVERY_N_LABELS"
RETRAIN_FEATURES_ENV = "NEOPAIN_RETRAIN_FEATURES"
#: The model kinds the retraining job trains (``train_model --features``): PainNet, facial actions,
#: facial movement; the two face models judge each frame against its neonate's baseline.
RETRAIN_FEATURES = ("cnn", "actions", "motion")
#: What it trains when ``NEOPAIN_RETRAIN_FEATURES`` is unset: as ``train_model``, the facial-movement
#: model (it learned best in LOSOCV on every planted set measured; issue 14). PainNet: ``cnn``.
RETRAIN_FEATURES_DEFAULT = "motion"


def retrain_features() -> str:
    """``NEOPAIN_RETRAIN_FEATURES``: the model kind the retraining job trains; ``motion`` when unset."""
    raw = os.environ.get(RETRAIN_FEATURES_ENV, "").strip()
    if not raw:
        return RETRAIN_FEATURES_DEFAULT
    if raw not in RETRAIN_FEATURES:
        raise ImproperlyConfigured(f"{RETRAIN_FEATURES_ENV} must be one of {', '.join(RETRAIN_FEATURES)}, got {raw!r}")
    return raw


def retrain_from_assessments(
    *,
    unit: Unit | None,
    config: Any = None,
    out: str | os.PathLike[str] | None = None,
    actor: User | None = None,
    progress: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    features: str = RETRAIN_FEATURES_DEFAULT,
) -> tuple[ModelVersion, dict[str, Any]]:
    """Export the unit's nurse labels, train a model of kind ``features`` on them and register it as a candidate.

    ``features`` as ``train_model --features``: ``motion`` (the default) or ``actions`` (a face model,
    always with ``--baseline neonate``: ``config``'s baseline options are kept, its baseline set to
    ``neonate``), or ``cnn`` (PainNet, ``config`` as given). Audit labels set the guarantee when there are enough,
    whichever kind. Returns ``(model_version, metrics)``. Activation stays a person's decision
    (``model_version_activate``).
    """
    from inference import training as tr
    from triage.services import model_version_register

    if features not in RETRAIN_FEATURES:
        raise ValueError(f"features must be one of {RETRAIN_FEATURES}, got {features!r}")
    face_model = features != "cnn"
    config = config or tr.TrainConfig()
    if face_model:
        config = dataclasses.replace(config, baseline="neonate", finetune="head")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    scope = unit.code if unit else "all"
    with tempfile.TemporaryDirectory(prefix="neopain-export-") as tmp:
        summary = training_set_export(unit=unit, out_dir=tmp)
        logger.info(
            "retraining %s (%s) on %s labels; labels by source %s; by observation method %s",
            scope,
            features,
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
        audit = audit_flags(tmp, crops.images)
        if face_model:
            from inference.training.actions_model import FACE_MODELS, face_model_description, train_actions_model

            trained = train_actions_model(
                crops, config=config, alpha=unit_alpha(unit), dataset=dataset, kind=features, audit=audit
            )
            name, description = f"{FACE_MODELS[features][0]}-{scope}", face_model_description(features, dataset)
        else:
            trained = tr.train_model(
                crops, config=config, alpha=unit_alpha(unit), progress=progress, dataset=dataset, audit=audit
            )
            name, description = f"painnet-{scope}", ""
    detail = config.backbone if not face_model else features
    target = Path(out) if out else Path(settings.MODELS_DIR) / f"{name}-{detail}-{stamp}.pt"
    tr.bundle_write(trained, target, name=name, version=stamp, description=description)
    model_version = model_version_register(bundle_path=target, unit=unit, actor=actor, metrics=trained.metrics)
    return model_version, trained.metrics


def retrain_if_due(*, unit: Unit, every_n: int, features: str | None = None) -> ModelVersion | None:
    """Retrain ``unit``'s model when ``every_n`` new usable labels arrived since its newest model.

    ``features``: the model kind to train; ``NEOPAIN_RETRAIN_FEATURES`` when None (read here, so a
    bad value fails the job with ImproperlyConfigured instead of at startup).
    """
    features = features or retrain_features()
    latest = ModelVersion.objects.filter(kind=ModelVersion.Kind.CLASSIFIER, unit=unit).order_by("-created_at").first()
    new_labels = labels_since(unit=unit, since=latest.created_at if latest else None)
    if new_labels < every_n:
        logger.info("unit %s: %d new labels, retraining at %d", unit.code, new_labels, every_n)
        return None
    logger.info("unit %s: %d new labels, retraining a %s model", unit.code, new_labels, features)
    model_version, _ = retrain_from_assessments(unit=unit, features=features)
    return model_version
