"""Scoring in the inference worker: claim a batch of frames, run the pipeline, record predictions."""

from __future__ import annotations

import logging

from triage.metrics.instruments import batch_observe, frames_outcome_count
from triage.models import Frame, ModelVersion
from triage.services.baselines import baselines_apply, baselines_update
from triage.services.claims import frames_claim, frames_fail, frames_release
from triage.services.predictions import predictions_record
from triage.services.sweeper import WAITING_FOR_MODEL

logger = logging.getLogger(__name__)


class FramesRetry(Exception):
    """A transient fault after the claimed frames were released; the task retries with backoff."""


def _pipeline_for(*, classifier: ModelVersion, detector: ModelVersion | None):
    """The per-process cached pipeline for this model pair (loaded once, hot-swapped on activation)."""
    from django.conf import settings

    from inference.pipeline import get_pipeline

    if detector is not None:
        _detector_weights_check(detector=detector)
        detector_name, detector_weights = "yolo", detector.bundle_path
    else:
        detector_name, detector_weights = settings.NEOPAIN_DETECTOR, settings.NEOPAIN_DETECTOR_WEIGHTS or None
    pipeline = get_pipeline(
        classifier.bundle_path,
        expected_sha256=classifier.sha256,
        detector=detector_name,
        detector_weights=detector_weights,
    )
    if hasattr(pipeline, "margin"):
        pipeline.margin = settings.NEOPAIN_FACE_MARGIN
    if hasattr(pipeline, "saliency"):
        # Grad-CAM maps from the classifier's own forward pass (no second pass per nurse case).
        pipeline.saliency = settings.NEOPAIN_SALIENCY
    return pipeline, detector_name


# (path, size, mtime, inode) -> sha256: a detector file is hashed once per version on disk, not per batch.
_DETECTOR_HASHES: dict[tuple, str] = {}


def _detector_weights_check(*, detector: ModelVersion) -> None:
    """Refuse detector weights that are no longer the registered file (a YOLO ``.pt`` is a pickle).

    Raises ``BundleError`` (or ``FileNotFoundError``), which fails the batch's frames with the reason.
    """
    from pathlib import Path

    from inference.bundle import BundleError, sha256_file

    path = Path(detector.bundle_path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    actual = _DETECTOR_HASHES.get(key)
    if actual is None:
        actual = _DETECTOR_HASHES[key] = sha256_file(path)
    if actual != detector.sha256:
        raise BundleError(
            f"detector weights {path} have sha256 {actual[:12]}..., not the registered "
            f"{detector.sha256[:12]}...; register the new file instead"
        )


def pipelines_warm() -> int:
    """Load the pipeline of every active classifier now (worker start-up); returns how many."""
    from triage.selectors import active_model_for_unit

    classifiers = ModelVersion.objects.filter(kind=ModelVersion.Kind.CLASSIFIER, status=ModelVersion.Status.ACTIVE)
    loaded = 0
    for classifier in classifiers.select_related("unit"):
        detector = active_model_for_unit(unit=classifier.unit, kind=ModelVersion.Kind.DETECTOR)
        _pipeline_for(classifier=classifier, detector=detector)
        loaded += 1
    logger.info("preloaded %d model pipeline(s)", loaded)
    return loaded


def frames_process(*, frame_ids: list[int], batch_max: int | None = None) -> dict[str, int]:
    """Score the given frames and any others waiting for the same model, in batches.

    Idempotent: only ``queued`` frames are claimed, and a (frame, model version) prediction is
    created at most once, so a duplicate delivery does nothing. Transient faults release the
    claimed frames and raise (the task retries); a soft time limit fails them with a reason.
    Returns counts by outcome.
    """
    from celery.exceptions import SoftTimeLimitExceeded
    from django.conf import settings
    from django.db import DatabaseError

    from triage.selectors import active_model_for_unit

    batch_max = batch_max or settings.NEOPAIN_BATCH_MAX
    counts = {"claimed": 0, "done": 0, "no_face": 0, "failed": 0, "duplicate": 0, "waiting": 0}
    claimed = frames_claim(frame_ids=frame_ids, batch_max=batch_max)
    counts["claimed"] = len(claimed)
    if not claimed:
        logger.info("frames %s: nothing to claim (already processed or in progress)", frame_ids)
        return counts
    pending = set(claimed)
    try:
        frames = list(
            Frame.objects.filter(pk__in=claimed).select_related("neonate", "unit").order_by("received_at", "pk")
        )
        pending = {f.pk for f in frames}
        max_attempts = settings.NEOPAIN_FRAME_MAX_ATTEMPTS
        over = [f.pk for f in frames if f.attempts > max_attempts]
        if over:
            frames_fail(frame_ids=over, reason=f"gave up after {max_attempts} attempts")
            counts["failed"] += len(over)
            pending -= set(over)
            frames = [f for f in frames if f.pk not in over]
        groups: dict[tuple, list] = {}
        models: dict[int, tuple] = {}
        for frame in frames:
            if frame.unit_id not in models:
                models[frame.unit_id] = (
                    active_model_for_unit(unit=frame.unit),
                    active_model_for_unit(unit=frame.unit, kind=ModelVersion.Kind.DETECTOR),
                )
            classifier, detector = models[frame.unit_id]
            if classifier is None:
                frames_release(frame_ids=[frame.pk], reason=WAITING_FOR_MODEL)
                pending.discard(frame.pk)
                counts["waiting"] += 1
                continue
            groups.setdefault((classifier.pk, detector.pk if detector else None), []).append(frame)
        for (_, _), group in groups.items():
            classifier, detector = models[group[0].unit_id]
            for start in range(0, len(group), batch_max):
                batch = group[start : start + batch_max]
                _frames_score_batch(frames=batch, classifier=classifier, detector=detector, counts=counts)
                pending -= {f.pk for f in batch}
    except SoftTimeLimitExceeded:
        frames_fail(frame_ids=sorted(pending), reason="time limit exceeded")
        counts["failed"] += len(pending)
        frames_outcome_count(counts)
        return counts
    except (DatabaseError, OSError) as exc:
        try:
            frames_release(frame_ids=sorted(pending), reason=f"retrying after {type(exc).__name__}")
        except DatabaseError:
            pass  # the sweeper re-queues them
        raise FramesRetry(f"{type(exc).__name__}: {exc}") from exc
    except Exception:
        frames_fail(frame_ids=sorted(pending), reason="internal error while scoring (see worker log)")
        raise
    frames_outcome_count(counts)
    return counts


def _frames_score_batch(*, frames: list, classifier: ModelVersion, detector: ModelVersion | None, counts: dict) -> None:
    """Run one batch through the pipeline and record its outcomes (:func:`predictions_record`)."""
    import time

    from inference.bundle import BundleError

    images: list[bytes] = []
    readable: list = []
    for frame in frames:
        try:
            with frame.image.open("rb") as handle:
                images.append(handle.read())
            readable.append(frame)
        except FileNotFoundError:
            frames_fail(frame_ids=[frame.pk], reason="stored image file is missing")
            counts["failed"] += 1
    if not readable:
        return
    try:
        pipeline, detector_name = _pipeline_for(classifier=classifier, detector=detector)
    except (BundleError, FileNotFoundError) as exc:
        frames_fail(frame_ids=[f.pk for f in readable], reason=f"model {classifier.label} cannot be used: {exc}")
        counts["failed"] += len(readable)
        return
    started = time.perf_counter()
    outcomes = pipeline.run_batch(images)
    # A model that judges frames against the baby's own resting face: rescore against it.
    baselines_apply(frames=readable, outcomes=outcomes, classifier=classifier, pipeline=pipeline)
    seconds = time.perf_counter() - started
    batch_observe(model_version=classifier.label, seconds=seconds, size=len(readable))
    logger.info("scored %d frames with %s in %.0f ms", len(readable), classifier.label, seconds * 1000)
    results = predictions_record(
        frames=readable,
        outcomes=outcomes,
        classifier=classifier,
        detector=detector,
        detector_name=detector_name,
        pipeline=pipeline,
    )
    baselines_update(frames=readable, outcomes=outcomes, results=results, classifier=classifier, pipeline=pipeline)
    for result in results:
        counts[result] = counts.get(result, 0) + 1
