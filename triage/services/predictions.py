"""Prediction routing (automatic verdict or nurse case) and recording, one frame or a batch."""

from __future__ import annotations

import hashlib
import logging

from django.db import transaction
from django.utils import timezone

from triage.models import Alert, Frame, ModelVersion, Prediction, TriageCase
from triage.services.alerts import alert_raise
from triage.services.claims import frames_fail
from triage.services.units import unit_settings_get

logger = logging.getLogger(__name__)


def prediction_route(*, confidence: float, threshold: float, is_bootstrap: bool) -> str:
    """Automatic verdict at or above the unit's threshold (paper), else a nurse case.

    The bootstrap model is a facial-grimace proxy never trained on neonates: it may rank cases for
    nurses but never decides alone, so nothing it says raises an alert or closes a case unseen.
    """
    if is_bootstrap:
        return Prediction.Route.NURSE
    return Prediction.Route.AUTO if confidence >= threshold else Prediction.Route.NURSE


def _prediction_build(
    *,
    frame,
    outcome,
    classifier: ModelVersion,
    detector: ModelVersion | None,
    detector_name: str,
    pipeline,
    unit_policy,
    now,
):
    """An unsaved :class:`Prediction` for an ``ok`` outcome (crop and Grad-CAM files stored) and its case, if routed to a nurse.

    Returns ``(prediction, case_or_None)``; the caller writes both (and the frame's state) in a transaction
    and deletes the files with :func:`_prediction_files_delete` if it cannot.
    """
    import random

    from django.conf import settings
    from django.core.files.base import ContentFile

    threshold = float(unit_policy.threshold)
    confidence = float(outcome.confidence)
    routed_to = prediction_route(confidence=confidence, threshold=threshold, is_bootstrap=classifier.is_bootstrap)
    baseline = getattr(outcome, "baseline", None) or {}
    if baseline and not baseline.get("used"):
        # Cold start: the model was calibrated on frames judged against the baby's own baseline;
        # without one its guarantee does not cover the frame, so a nurse decides.
        routed_to = Prediction.Route.NURSE
    x, y, w, h = (int(v) for v in outcome.box)
    timings = {k: round(float(v), 3) for k, v in (outcome.timings_ms or {}).items()}
    timings["queue_wait"] = round((now - frame.received_at).total_seconds() * 1000, 1)
    saliency = None
    if (
        routed_to == Prediction.Route.NURSE
        and settings.NEOPAIN_SALIENCY
        and outcome.crop is not None
        and pipeline is not None
    ):
        saliency = _saliency_image(pipeline=pipeline, crop=outcome.crop, cam=getattr(outcome, "saliency_map", None))
    prediction = Prediction(
        frame=frame,
        model_version=classifier,
        detector_version=detector,
        detector_name=detector_name[:40],
        p_pain=float(outcome.p_pain),
        label=outcome.label,
        confidence=confidence,
        threshold=threshold,
        routed_to=routed_to,
        weights_sha256=outcome.weights_sha256 or classifier.sha256,
        frame_sha256=outcome.frame_sha256 or frame.sha256,
        box_x=x,
        box_y=y,
        box_w=w,
        box_h=h,
        timings_ms=timings,
        created_at=now,
        baseline_used=bool(baseline.get("used")),
        baseline_id=baseline.get("id"),
        baseline_digest=baseline.get("digest", ""),
        baseline_frames=baseline.get("frames"),
        baseline_actions=baseline.get("actions") or [],
    )
    try:
        if outcome.crop is not None:
            # The GPU pipeline hands the crop over already encoded (its encoder threads): no encode here.
            crop_jpeg = getattr(outcome, "crop_jpeg", None) or _jpeg_bytes(outcome.crop)
            prediction.crop.save("crop.jpg", ContentFile(crop_jpeg), save=False)
        if saliency:
            prediction.saliency.save("saliency.jpg", ContentFile(saliency), save=False)
    except BaseException:
        _prediction_files_delete(prediction)
        raise
    case = None
    # A random share of automatic verdicts also goes to a nurse, blind: the only labels that are not
    # selected by the model's own uncertainty (calibration and live accuracy need those).
    # Drawn from the frame's content hash, not the clock: a redelivered frame gets the same answer.
    audit = routed_to == Prediction.Route.AUTO and audit_drawn(frame=frame, share=unit_policy.audit_share)
    if routed_to == Prediction.Route.NURSE or audit:
        double = unit_policy.double_scoring_share > 0 and random.random() < unit_policy.double_scoring_share
        case = TriageCase(
            prediction=prediction,
            unit_id=frame.unit_id,
            neonate_id=frame.neonate_id,
            confidence=confidence,
            p_pain=float(outcome.p_pain),
            is_audit=audit,
            created_at=now,
            captured_at=frame.captured_at,
            assessments_required=2 if double else 1,
        )
    return prediction, case


def audit_drawn(*, frame, share: float) -> bool:
    """Whether an automatic verdict on ``frame`` is also a blind audit case: a uniform draw at ``share``.

    The draw is the frame's sha256 read as a number in [0, 1): independent of the model's output,
    so the audited frames are a random sample of the automatic ones, and the same on every rerun.
    """
    if share <= 0:
        return False
    digest = frame.sha256 or hashlib.sha256(str(frame.pk).encode()).hexdigest()
    return int(digest[:13], 16) / float(16**13) < share


def _prediction_files_delete(prediction) -> None:
    for field in (prediction.crop, prediction.saliency):
        if field.name:
            field.storage.delete(field.name)


def _prediction_outcome_check(*, frame, outcome, now) -> str | None:
    """Record a frame whose outcome is not a prediction (hash mismatch, no face, unreadable); its result or ``None``."""
    if outcome.frame_sha256 and outcome.frame_sha256 != frame.sha256:
        frames_fail(frame_ids=[frame.pk], reason="stored image does not match its upload hash")
        return "failed"
    if outcome.status != "ok":
        status = Frame.Status.NO_FACE if outcome.status == "no_face" else Frame.Status.FAILED
        reason = outcome.reason or ("no face found" if status == Frame.Status.NO_FACE else "unreadable image")
        Frame.objects.filter(pk=frame.pk, status=Frame.Status.PROCESSING).update(
            status=status, reason=reason[:1000], status_changed_at=now
        )
        return "no_face" if status == Frame.Status.NO_FACE else "failed"
    return None


def _prediction_logged(prediction) -> None:
    logger.info(
        "frame %s: %s p_pain=%.3f conf=%.3f threshold=%.2f -> %s",
        prediction.frame_id,
        prediction.label,
        prediction.p_pain,
        prediction.confidence,
        prediction.threshold,
        prediction.routed_to,
    )


def prediction_record(
    *,
    frame,
    outcome,
    classifier: ModelVersion,
    detector: ModelVersion | None,
    detector_name: str,
    pipeline=None,
    unit_policy=None,
) -> str:
    """Store one pipeline outcome: the prediction, its routing (case or automatic verdict) and the frame's state.

    Returns ``done``, ``no_face``, ``failed`` or ``duplicate`` (a prediction for this frame and
    model already exists: a redelivered message). ``unit_policy``: the unit's settings, if the
    caller has them already.
    """
    from django.db import IntegrityError

    now = timezone.now()
    result = _prediction_outcome_check(frame=frame, outcome=outcome, now=now)
    if result is not None:
        return result
    prediction, case = _prediction_build(
        frame=frame,
        outcome=outcome,
        classifier=classifier,
        detector=detector,
        detector_name=detector_name,
        pipeline=pipeline,
        unit_policy=unit_policy or unit_settings_get(unit=frame.unit),
        now=now,
    )
    try:
        with transaction.atomic():
            prediction.save()
            if case is not None:
                case.prediction = prediction
                case.save(force_insert=True)
            if (case is None or case.is_audit) and prediction.label == Prediction.Label.PAIN:
                # An audit case does not hold back the automatic verdict's alert.
                alert_raise(neonate=frame.neonate, source=Alert.Source.AUTO, prediction=prediction, at=now)
            Frame.objects.filter(pk=frame.pk).update(status=Frame.Status.DONE, reason="", status_changed_at=now)
    except IntegrityError:
        _prediction_files_delete(prediction)
        if Prediction.objects.filter(frame=frame, model_version=classifier).exists():
            Frame.objects.filter(pk=frame.pk, status=Frame.Status.PROCESSING).update(
                status=Frame.Status.DONE, reason="", status_changed_at=now
            )
            logger.info("frame %s already has a prediction from %s; duplicate ignored", frame.pk, classifier.label)
            return "duplicate"
        raise
    except BaseException:
        # The row was not written (database gone, time limit): no orphan crop or saliency file.
        _prediction_files_delete(prediction)
        raise
    _prediction_logged(prediction)
    return "done"


def predictions_record(
    *,
    frames: list,
    outcomes: list,
    classifier: ModelVersion,
    detector: ModelVersion | None,
    detector_name: str,
    pipeline=None,
) -> list[str]:
    """:func:`prediction_record` for a whole batch, with the same results, in one transaction.

    The predictions and cases of the batch are inserted with one statement each and the frames
    marked done with one UPDATE (scripts/bench_worker.py: per-frame transactions were a fifth of
    the worker's time outside the models). If the batch cannot be written as a whole (a redelivered
    message's duplicate prediction, say), nothing of it is kept and every frame is recorded on its
    own, exactly as :func:`prediction_record` does.
    """
    from django.db import IntegrityError

    now = timezone.now()
    scoring = {"classifier": classifier, "detector": detector, "detector_name": detector_name, "pipeline": pipeline}
    results: list[str | None] = [None] * len(frames)
    policies: dict[int, object] = {}
    built: list[tuple[int, object, object]] = []
    try:
        for index, (frame, outcome) in enumerate(zip(frames, outcomes)):
            results[index] = _prediction_outcome_check(frame=frame, outcome=outcome, now=now)
            if results[index] is not None:
                continue
            if frame.unit_id not in policies:
                policies[frame.unit_id] = unit_settings_get(unit=frame.unit)
            prediction, case = _prediction_build(
                frame=frame, outcome=outcome, unit_policy=policies[frame.unit_id], now=now, **scoring
            )
            built.append((index, prediction, case))
        if built:
            with transaction.atomic():
                predictions = [prediction for _, prediction, _ in built]
                Prediction.objects.bulk_create(predictions)
                if any(p.pk is None for p in predictions):  # a backend that cannot return ids
                    raise IntegrityError("bulk insert returned no primary keys")
                cases = []
                for index, prediction, case in built:
                    if case is not None:
                        case.prediction = prediction
                        cases.append(case)
                    if (case is None or case.is_audit) and prediction.label == Prediction.Label.PAIN:
                        frame = frames[index]
                        alert_raise(neonate=frame.neonate, source=Alert.Source.AUTO, prediction=prediction, at=now)
                if cases:
                    TriageCase.objects.bulk_create(cases)
                Frame.objects.filter(pk__in=[frames[index].pk for index, _, _ in built]).update(
                    status=Frame.Status.DONE, reason="", status_changed_at=now
                )
    except IntegrityError:
        for _, prediction, _ in built:
            _prediction_files_delete(prediction)
            prediction.pk = None
        logger.info("batch of %d predictions not written as a whole; recording frame by frame", len(built))
        for index, _, _ in built:
            results[index] = prediction_record(
                frame=frames[index], outcome=outcomes[index], unit_policy=policies.get(frames[index].unit_id), **scoring
            )
        return [str(result) for result in results]
    except BaseException:
        # Nothing was written (database gone, time limit): no orphan crop or saliency file.
        for _, prediction, _ in built:
            _prediction_files_delete(prediction)
        raise
    for index, prediction, _ in built:
        results[index] = "done"
        _prediction_logged(prediction)
    return [str(result) for result in results]


def _jpeg_bytes(image) -> bytes:
    """The crop and its Grad-CAM overlay are display copies for the nurse: JPEG (quality 90) encodes a
    224x224 image in ~0.5 ms and ~15 KB, PNG in 9-35 ms and ~75 KB (2 cores; scripts/bench_worker.py).
    Training never reads them: the training set is cut again from the original frame."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _saliency_image(*, pipeline, crop, cam=None) -> bytes | None:
    """Grad-CAM overlay for the nurse (``cam``: the pipeline's map); a failure costs the overlay, never the verdict.

    ``None`` as well when nothing on the face raised the pain score (the map is zero everywhere): a
    uniformly tinted copy of the crop captioned "where the model looked" would tell the nurse nothing.
    """
    try:
        from inference.saliency import gradcam_map, overlay

        if cam is None:
            cam = gradcam_map(pipeline.model, crop)
        if not float(cam.max()) > 0:
            return None
        return _jpeg_bytes(overlay(pipeline.model, crop, cam))
    except Exception as exc:
        logger.warning("saliency map failed: %s: %s", type(exc).__name__, exc)
        return None
