"""Celery tasks of the learning loop: optional retraining when enough new nurse labels arrived.

Off by default. Set ``NEOPAIN_RETRAIN_EVERY_N_LABELS=N`` (N >= 1) and schedule
``annotations.tasks.retrain_when_new_labels`` in beat (e.g. hourly); each unit whose newest
classifier is older than N new usable labels gets a retrained *candidate*, never an
activation. ``NEOPAIN_RETRAIN_FEATURES`` picks the model kind: ``motion`` (the facial-movement
model, the default) or ``actions`` (the face models, each frame judged against its neonate's
baseline), or ``cnn`` (PainNet).
Training takes minutes: route the task to a worker of its own.
"""

from __future__ import annotations

import logging
import os

from celery import shared_task
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


def retrain_every_n_labels() -> int:
    """``NEOPAIN_RETRAIN_EVERY_N_LABELS`` as an int; 0 (unset or empty) means off."""
    raw = os.environ.get("NEOPAIN_RETRAIN_EVERY_N_LABELS", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"NEOPAIN_RETRAIN_EVERY_N_LABELS must be an integer, got {raw!r}") from exc
    if value < 0:
        raise ImproperlyConfigured("NEOPAIN_RETRAIN_EVERY_N_LABELS must be >= 0")
    return value


# Training outlives the default task time limits (2-3 min): give it hours.
@shared_task(name="annotations.tasks.retrain_when_new_labels", soft_time_limit=4 * 3600, time_limit=4 * 3600 + 300)
def retrain_when_new_labels() -> dict:
    """For each unit, register a retrained candidate when N new labels arrived (see module doc)."""
    from annotations.learning import retrain_features, retrain_if_due
    from triage.models import Unit

    every_n = retrain_every_n_labels()
    if not every_n:
        return {"enabled": False}
    # Read once, before the loop: a bad value fails the job with its reason, not each unit in the log.
    features = retrain_features()
    retrained = {}
    for unit in Unit.objects.all():
        try:
            model_version = retrain_if_due(unit=unit, every_n=every_n, features=features)
        except Exception:  # one unit's failure must not stop the others
            logger.exception("retraining for unit %s failed", unit.code)
            continue
        if model_version is not None:
            retrained[unit.code] = model_version.pk
    return {"enabled": True, "every_n": every_n, "features": features, "retrained": retrained}


# Scoring two bundles on every held-out nurse label takes minutes on a CPU worker.
@shared_task(name="annotations.tasks.model_compare", soft_time_limit=3600, time_limit=3600 + 120)
def model_compare(candidate_id: int, actor_id: int | None = None) -> dict:
    """The models page's "compare with the active model": held-out comparison, kept on the candidate, audited."""
    from annotations.model_comparison import model_comparison_store, models_compare
    from triage.models import ModelVersion, User
    from triage.services import audit_record

    candidate = ModelVersion.objects.filter(pk=candidate_id).first()
    if candidate is None:
        logger.info("model_compare: model version %s is gone", candidate_id)
        return {"compared": False}
    actor = User.objects.filter(pk=actor_id).first() if actor_id else None
    try:
        result = models_compare(candidate=candidate)
    except Exception as exc:  # a missing bundle, no labels, a detector: the page shows why, not "pending" forever
        logger.exception("model_compare: model version %s could not be compared", candidate_id)
        result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    model_comparison_store(candidate=candidate, comparison=result)
    audit_record(
        action="model.compared",
        actor=actor,
        unit=candidate.unit,
        obj=candidate,
        after={"n": result.get("n"), "verdict": result.get("verdict"), "error": result.get("error")},
    )
    logger.info("model %s compared: %s", candidate.label, result.get("verdict") or result.get("error"))
    return {"compared": True, "verdict": result.get("verdict")}
