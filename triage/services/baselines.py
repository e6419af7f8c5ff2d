"""Per-neonate baselines in the worker: score frames against them, keep them up to date, rebuild them.

The maths is :mod:`inference.baseline` (the same functions evaluation uses); this module only
loads and stores the windows (:class:`~triage.models.NeonateBaseline`).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from triage.models import Frame, ModelVersion, NeonateBaseline

logger = logging.getLogger(__name__)


def _policy(pipeline):
    from inference.baseline import BaselinePolicy

    model = getattr(pipeline, "model", None)
    return BaselinePolicy.from_metadata(model.metadata) if model is not None else None


def neonate_baseline_rebuild(*, neonate, classifier: ModelVersion, pipeline, exclude_frame_ids=()) -> NeonateBaseline:
    """Create the neonate's baseline for ``classifier`` from its most recent stored frames.

    Runs when the unit's model changes (no row yet for this model): the embeddings of the previous
    model mean nothing to this one, so the neonate's last ``window`` scored frames are embedded
    again through the same pipeline. Rows of other model versions for this neonate are dropped.
    Frames whose image is gone (retention) are skipped; with none, the baseline starts empty.
    """
    import numpy as np

    from inference.baseline import array_to_bytes, baseline_digest, baseline_of_window

    policy = _policy(pipeline)
    recent = list(
        Frame.objects.filter(neonate=neonate, status=Frame.Status.DONE)
        .exclude(pk__in=list(exclude_frame_ids))
        .order_by("-received_at", "-pk")[: policy.window]
    )
    images = []
    for frame in reversed(recent):
        try:
            with frame.image.open("rb") as handle:
                images.append(handle.read())
        except (FileNotFoundError, ValueError):
            continue
    embeddings = [o.embedding[0] for o in (pipeline.run_batch(images) if images else []) if o.is_ok and o.embedding]
    dim = int(pipeline.model.module.feature_dim)
    window = np.stack(embeddings).astype(np.float32) if embeddings else np.zeros((0, dim), np.float32)
    value = baseline_of_window(window, policy)
    with transaction.atomic():
        NeonateBaseline.objects.filter(neonate=neonate).exclude(model_version=classifier).delete()
        row, _ = NeonateBaseline.objects.update_or_create(
            neonate=neonate,
            model_version=classifier,
            defaults={
                "dim": dim,
                "window": array_to_bytes(window),
                "n_frames": len(window),
                "value": array_to_bytes(value) if value is not None else b"",
                "digest": baseline_digest(value) if value is not None else "",
                "rebuilt_from_frames": len(window),
                "updated_at": timezone.now(),
            },
        )
    logger.info(
        "baseline of neonate %s for %s rebuilt from %d stored frame(s)", neonate.pk, classifier.label, len(window)
    )
    return row


def baselines_apply(*, frames: list, outcomes: list, classifier: ModelVersion, pipeline) -> None:
    """Rescore each ``ok`` outcome of a baseline model against its neonate's baseline, in place.

    Sets ``outcome.baseline`` (used or cold start, which row, its fingerprint and frame count) and
    ``p_pain``/``label``/``confidence`` from :func:`inference.baseline.model_p_pain`. The baseline
    in force is the one before this batch (its own frames join it afterwards, see
    :func:`baselines_update`). Does nothing for a model without a baseline.
    """
    from inference.baseline import array_from_bytes, model_p_pain
    from inference.face_actions import actions_readout

    policy = _policy(pipeline)
    if policy is None:
        return
    batch_ids = [f.pk for f in frames]
    rows: dict[int, NeonateBaseline] = {}
    for frame in frames:
        if frame.neonate_id in rows:
            continue
        row = NeonateBaseline.objects.filter(neonate_id=frame.neonate_id, model_version=classifier).first()
        if row is None:
            row = neonate_baseline_rebuild(
                neonate=frame.neonate, classifier=classifier, pipeline=pipeline, exclude_frame_ids=batch_ids
            )
        rows[frame.neonate_id] = row
    for frame, outcome in zip(frames, outcomes):
        if not outcome.is_ok or outcome.embedding is None:
            continue
        row = rows[frame.neonate_id]
        value = array_from_bytes(row.value, row.dim)
        baseline = value[0] if value is not None else None
        embedding, mirrored = outcome.embedding
        p_pain = float(
            model_p_pain(pipeline.model, embedding[None], mirrored[None] if mirrored is not None else None, [baseline])[
                0
            ]
        )
        outcome.p_pain = p_pain
        outcome.label = "pain" if p_pain >= 0.5 else "nonpain"
        outcome.confidence = p_pain if outcome.label == "pain" else 1.0 - p_pain
        outcome.baseline = {
            "used": baseline is not None,
            "id": row.pk,
            "digest": row.digest if baseline is not None else "",
            "frames": row.n_frames,
            "min_frames": policy.min_frames,
            # A facial-action model: the measures against this baby's rest, for the nurse.
            "actions": actions_readout(embedding, baseline)
            if baseline is not None and pipeline.model.metadata.get("actions")
            else [],
        }


def baselines_update(*, frames: list, outcomes: list, results: list[str], classifier: ModelVersion, pipeline) -> None:
    """Append the embeddings of newly recorded frames to their neonates' windows and recompute the median.

    Only frames recorded now (``done``) count: a redelivered frame is not added twice. The window
    keeps the last ``window`` frames; the row is locked while it changes (several workers).
    """
    import numpy as np

    from inference.baseline import (
        array_from_bytes,
        array_to_bytes,
        baseline_digest,
        baseline_of_window,
        baseline_window_append,
    )

    policy = _policy(pipeline)
    if policy is None:
        return
    new: dict[int, list] = {}
    for frame, outcome, result in zip(frames, outcomes, results):
        if result == "done" and outcome.is_ok and outcome.embedding is not None:
            new.setdefault(frame.neonate_id, []).append(outcome.embedding[0])
    for neonate_id, embeddings in new.items():
        with transaction.atomic():
            row = (
                NeonateBaseline.objects.select_for_update()
                .filter(neonate_id=neonate_id, model_version=classifier)
                .first()
            )
            if row is None:
                continue  # dropped meanwhile (the model changed again): the next batch rebuilds it
            window = baseline_window_append(
                array_from_bytes(row.window, row.dim), np.stack(embeddings), size=policy.window
            )
            value = baseline_of_window(window, policy)
            row.window = array_to_bytes(window)
            row.n_frames = len(window)
            row.value = array_to_bytes(value) if value is not None else b""
            row.digest = baseline_digest(value) if value is not None else ""
            row.updated_at = timezone.now()
            row.save(update_fields=["window", "n_frames", "value", "digest", "updated_at"])
