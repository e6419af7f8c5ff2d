"""The figures a model version carries: the unit's targets they are computed at, and their storage."""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction

from triage.models import ModelVersion, Unit, User

#: Used when the unit has not set a missed-pain target.
DEFAULT_ALPHA = 0.05


def unit_alpha(unit: Unit | None) -> float:
    """The unit admin's missed-pain target for the guaranteed threshold (0.05 when unset)."""
    if unit is None:
        return DEFAULT_ALPHA
    from triage.services import unit_settings_get

    return unit_settings_get(unit=unit).missed_pain_target or DEFAULT_ALPHA


def unit_threshold(unit: Unit | None) -> float:
    """The unit's confidence threshold in force (the paper's 0.55 for no unit)."""
    if unit is None:
        return 0.55
    from triage.services import unit_settings_get

    return unit_settings_get(unit=unit).threshold


# Keys of ModelVersion.metrics that describe the threshold behaviour (the admin page draws them).
THRESHOLD_METRIC_KEYS = (
    "accuracy",
    "auc",
    "sensitivity",
    "specificity",
    "aurc",
    "ece",
    "ece_temperature_scaled",
    "temperature",
    "thresholds",
    "risk_coverage",
    "guarantee",
    "n",
    "n_pain",
    "evaluation",
    "dataset",
)


def model_metrics_store(
    *, model_version: ModelVersion, analysis: dict[str, Any], actor: User | None = None
) -> ModelVersion:
    """Make ``analysis`` (a held-out threshold analysis) the model's displayed threshold figures.

    The figures they replace are kept under ``metrics["previous_evaluations"]``; audited.
    """
    from triage.services import audit_record

    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        metrics = dict(locked.metrics or {})
        previous = {
            k: metrics[k] for k in THRESHOLD_METRIC_KEYS if k in metrics and k not in ("thresholds", "risk_coverage")
        }
        history = list(metrics.get("previous_evaluations") or [])
        if previous:
            history.append(previous)
        metrics.update({k: analysis[k] for k in THRESHOLD_METRIC_KEYS if k in analysis})
        metrics["previous_evaluations"] = history[-10:]
        locked.metrics = json.loads(json.dumps(metrics, default=str))
        locked.save(update_fields=["metrics"])
        audit_record(
            action="model.evaluated",
            actor=actor,
            unit=locked.unit,
            obj=locked,
            after={
                "evaluation": analysis.get("evaluation"),
                "n": analysis.get("n"),
                "accuracy": analysis.get("accuracy"),
            },
        )
    return locked
