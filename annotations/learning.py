"""The learning loop on the Django side: nurse decisions -> training set -> candidate -> comparison.

Pure ML lives in :mod:`inference.training` / :mod:`inference.thresholds`; this module adapts
rows to it. Reads (``*_labels``, ``agreement_by_model_version``) return plain data; writes
(``retrain_from_assessments``) register through the platform's ``model_version_register``.

Subjects are pseudonymous: ``nb-`` + the first 12 hex digits of
HMAC-SHA256(key, "neonate:<pk>"), the key being ``NEOPAIN_PSEUDONYM_KEY`` (setting or
environment) or else ``SECRET_KEY``. Stable for a deployment, so LOSOCV and validation
splits keep a neonate's frames together, while folder names in an exported set carry no
MRN (PHI). Rotate the key and the ids change (the frames do not).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Prefetch

from annotations.models import FaceBoxCorrection, NipsAssessment
from triage.models import ModelVersion, Prediction, TriageCase, Unit, User

logger = logging.getLogger(__name__)

#: Used when the unit has not set a missed-pain target.
DEFAULT_ALPHA = 0.05
RETRAIN_ENV = "NEOPAIN_RETRAIN_EVERY_N_LABELS"


# =============================================================================================
# Labels from nurse decisions
# =============================================================================================


def subject_pseudonym(*, neonate_id: int) -> str:
    """A stable, non-reversible subject id for a neonate (no MRN in exported folder names)."""
    key = (
        getattr(settings, "NEOPAIN_PSEUDONYM_KEY", "")
        or os.environ.get("NEOPAIN_PSEUDONYM_KEY", "")
        or settings.SECRET_KEY
    )
    digest = hmac.new(str(key).encode(), f"neonate:{neonate_id}".encode(), hashlib.sha256).hexdigest()
    return f"nb-{digest[:12]}"


@dataclass(frozen=True)
class NurseLabel:
    """One usable training label: the case's frame, its crop box and the nurses' agreed verdict."""

    case_id: int
    frame_id: int
    neonate_id: int
    pain: bool
    box: tuple[int, int, int, int]
    box_source: str
    n_assessments: int


def case_label(case: TriageCase) -> tuple[bool | None, str]:
    """(label, reason when unusable) from a decided case's assessments.

    The pain verdict stored with each assessment is the unit's NIPS rule in force when she
    scored. Unable-to-assess scores carry no verdict and are ignored; a case with no verdict
    left is "unable"; two scorers who disagree make the case "disagreement" (excluded: the
    model should not be taught a label the nurses themselves did not agree on).
    """
    if case.status != TriageCase.Status.DECIDED:
        return None, "undecided"
    verdicts = [a.pain for a in case.assessments.all() if a.pain is not None and not a.unable_to_assess]
    if not verdicts:
        return None, "unable_to_assess"
    if len(set(verdicts)) > 1:
        return None, "disagreement"
    return bool(verdicts[0]), ""


def nurse_labels(*, unit: Unit | None = None) -> tuple[list[NurseLabel], Counter]:
    """Usable labels (one per frame, the latest decided case) and a count of exclusions by reason."""
    from inference.detect import DEFAULT_MARGIN
    from inference.preprocess import expand_box

    cases = (
        TriageCase.objects.select_related("prediction__frame")
        .prefetch_related(Prefetch("assessments", queryset=NipsAssessment.objects.order_by("created_at", "id")))
        .order_by("-decided_at", "-id")
    )
    if unit is not None:
        cases = cases.filter(unit=unit)
    corrections: dict[int, FaceBoxCorrection] = {}
    frame_ids = cases.values_list("prediction__frame_id", flat=True)
    for correction in FaceBoxCorrection.objects.filter(frame_id__in=frame_ids).order_by("created_at", "id"):
        corrections[correction.frame_id] = correction  # latest wins
    excluded: Counter = Counter()
    labels: list[NurseLabel] = []
    seen_frames: set[int] = set()
    for case in cases:
        pain, reason = case_label(case)
        frame = case.prediction.frame
        if reason:
            excluded[reason] += 1
            continue
        if frame.pk in seen_frames:
            excluded["duplicate_frame"] += 1
            continue
        seen_frames.add(frame.pk)
        correction = corrections.get(frame.pk)
        if correction is not None and correction.no_face:
            excluded["nurse_marked_no_face"] += 1
            continue
        if correction is not None:
            # Nurses draw the face itself; serving crops the detector box grown by the margin.
            box = expand_box(
                (correction.x, correction.y, correction.w, correction.h), DEFAULT_MARGIN, (frame.width, frame.height)
            )
            source = "nurse_correction"
        else:
            box = tuple(case.prediction.box)
            source = "prediction"
        labels.append(
            NurseLabel(
                case_id=case.pk,
                frame_id=frame.pk,
                neonate_id=frame.neonate_id,
                pain=bool(pain),
                box=tuple(int(v) for v in box),  # type: ignore[arg-type]
                box_source=source,
                n_assessments=len(case.assessments.all()),
            )
        )
    return labels, excluded


def training_set_export(*, unit: Unit | None = None, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write nurse-labelled face crops as ``out_dir/<subject>/<pain|nonpain>/<frame sha>.png``.

    Crops are made as serving makes them (decode, crop the prediction's box or the nurse's
    corrected box, letterbox to 224), so ``train_model`` runs no detector on them
    (``dataset.json`` says ``"cropped": true``). Also writes ``manifest.csv`` (path, subject,
    label, frame_id, case_id). Returns the summary that ``dataset.json`` holds.
    """
    from inference.decode import UnreadableImage, decode_image
    from inference.preprocess import CROP_SIZE, DEFAULT_FILL, crop_face, letterbox
    from triage.models import Frame

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels, excluded = nurse_labels(unit=unit)
    frames = Frame.objects.in_bulk([label.frame_id for label in labels])
    rows = []
    for label in labels:
        frame = frames[label.frame_id]
        try:
            with frame.image.open("rb") as handle:
                image = decode_image(handle.read())
            crop = letterbox(crop_face(image, label.box), CROP_SIZE, DEFAULT_FILL)
        except (OSError, ValueError, UnreadableImage) as exc:
            logger.warning("frame %s skipped from the training set: %s", frame.pk, exc)
            excluded["image_unavailable"] += 1
            continue
        subject = subject_pseudonym(neonate_id=label.neonate_id)
        folder = out / subject / ("pain" if label.pain else "nonpain")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{frame.sha256[:24]}.png"
        crop.save(path, format="PNG")
        rows.append(
            [
                str(path.relative_to(out)),
                subject,
                "pain" if label.pain else "nonpain",
                frame.pk,
                label.case_id,
                label.box_source,
            ]
        )
    with (out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "subject", "label", "frame_id", "case_id", "box_source"])
        writer.writerows(rows)
    summary = {
        "cropped": True,
        "source": "nurse NIPS assessments",
        "unit": unit.code if unit else None,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "n_images": len(rows),
        "n_pain": sum(1 for r in rows if r[2] == "pain"),
        "n_subjects": len({r[1] for r in rows}),
        "excluded": dict(excluded),
        "label_rule": "the NIPS pain verdict stored with each assessment (the unit's rule in force); "
        "double-scored cases only when the nurses agree",
        "subject_id": "pseudonym nb-HMAC-SHA256(neonate pk), see annotations.learning",
    }
    (out / "dataset.json").write_text(json.dumps(summary, indent=2))
    return summary


def labels_since(*, unit: Unit, since: dt.datetime | None) -> int:
    """Decided cases of ``unit`` with at least one usable nurse verdict, decided after ``since``."""
    qs = TriageCase.objects.filter(
        unit=unit, status=TriageCase.Status.DECIDED, assessments__pain__isnull=False
    ).distinct()
    if since is not None:
        qs = qs.filter(decided_at__gt=since)
    return qs.count()


# =============================================================================================
# Agreement (Cohen's kappa) per model version
# =============================================================================================


def agreement_by_model_version(*, unit: Unit) -> list[dict[str, Any]]:
    """Cohen's kappa per model version: nurse vs nurse (double-scored cases) and model vs nurse.

    Rows ``{"model_version_id", "label", "status", "n_double_scored", "kappa_nurse_nurse",
    "agreement_nurse_nurse", "n_model_nurse", "kappa_model_nurse", "agreement_model_nurse"}``,
    newest model first. Only cases a nurse decided exist, i.e. the model's *low-confidence*
    cases: model-vs-nurse agreement here is on the hard cases, not overall accuracy.
    """
    from inference.thresholds import cohen_kappa

    cases = (
        TriageCase.objects.filter(unit=unit, status=TriageCase.Status.DECIDED)
        .select_related("prediction__model_version")
        .prefetch_related(Prefetch("assessments", queryset=NipsAssessment.objects.order_by("created_at", "id")))
    )
    per_model: dict[int, dict[str, Any]] = {}
    for case in cases:
        version = case.prediction.model_version
        entry = per_model.setdefault(version.pk, {"version": version, "pairs": [], "model": []})
        verdicts = [a.pain for a in case.assessments.all() if a.pain is not None]
        if len(verdicts) >= 2:
            entry["pairs"].append((verdicts[0], verdicts[1]))
        if case.final_pain is not None:
            entry["model"].append((case.prediction.label == Prediction.Label.PAIN, bool(case.final_pain)))
    rows = []
    for entry in sorted(per_model.values(), key=lambda e: e["version"].created_at, reverse=True):
        version: ModelVersion = entry["version"]
        pairs, model = entry["pairs"], entry["model"]
        rows.append(
            {
                "model_version_id": version.pk,
                "label": version.label,
                "status": version.status,
                "n_double_scored": len(pairs),
                "kappa_nurse_nurse": cohen_kappa([a for a, _ in pairs], [b for _, b in pairs]),
                "agreement_nurse_nurse": (sum(a == b for a, b in pairs) / len(pairs)) if pairs else None,
                "n_model_nurse": len(model),
                "kappa_model_nurse": cohen_kappa([a for a, _ in model], [b for _, b in model]),
                "agreement_model_nurse": (sum(a == b for a, b in model) / len(model)) if model else None,
            }
        )
    return rows


# =============================================================================================
# Candidate vs active on the same held-out nurse-labelled data
# =============================================================================================


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


def _mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs."""
    import math

    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def _training_hashes(model_version: ModelVersion | None) -> set[str]:
    if model_version is None:
        return set()
    data = (model_version.metadata or {}).get("training_data") or {}
    return set(data.get("train_sha256") or [])


def models_compare(
    *,
    candidate: ModelVersion,
    active: ModelVersion | None = None,
    dataset: str | os.PathLike[str] | None = None,
    unit: Unit | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score candidate and active on the same nurse-labelled images the candidate never trained on.

    ``dataset``: a dataset folder or manifest; default, the unit's nurse labels exported
    afresh. Images whose file hash is in either model's training split are left out (the
    candidate's validation subjects and every label since it was trained remain).
    Returns per-model figures at the unit's threshold and missed-pain target, and an
    exact McNemar test on the paired verdicts.
    """
    from inference import thresholds as th
    from inference import training as tr
    from inference.bundle import load_bundle
    from triage.selectors import active_model_for_unit

    if candidate.kind != ModelVersion.Kind.CLASSIFIER:
        raise ValueError("only classifier versions can be compared")
    unit = unit if unit is not None else candidate.unit
    if active is None:
        active = active_model_for_unit(unit=unit)
        if active is not None and active.pk == candidate.pk:
            active = None
    with tempfile.TemporaryDirectory(prefix="neopain-compare-") as tmp:
        if dataset is None:
            summary = training_set_export(unit=unit, out_dir=tmp)
            source = {"kind": "nurse assessments", "unit": unit.code if unit else None, "excluded": summary["excluded"]}
            dataset = tmp
        else:
            source = {"kind": "dataset", "path": str(dataset)}
        images = tr.dataset_read(dataset)
        info = tr.dataset_info(dataset)
        crop_settings = tr.CropSettings(detector="none") if info.get("cropped") else tr.CropSettings()
        crops = tr.face_crops(
            images, settings=crop_settings, cache_dir=cache_dir or Path(tmp) / "cache", progress=False
        )
    trained_on = _training_hashes(candidate) | _training_hashes(active)
    keep = [i for i, sha in enumerate(crops.file_sha256) if sha not in trained_on]
    held_out = crops.subset(keep)
    labels = held_out.labels
    alpha = unit_alpha(unit)
    threshold = unit_threshold(unit)
    result: dict[str, Any] = {
        "n": len(keep),
        "n_excluded_training_images": len(crops.images) - len(keep),
        "n_skipped_no_face": len(crops.skipped),
        "source": source,
        "alpha": alpha,
        "unit_threshold": threshold,
        "models": {},
    }
    verdicts: dict[str, Any] = {}
    for role, version in (("candidate", candidate), ("active", active)):
        if version is None:
            continue
        loaded = load_bundle(version.bundle_path, expected_sha256=version.sha256)
        p_pain = loaded.predict_proba(held_out.crops)[:, loaded.pain_index] if held_out.crops else []
        figures: dict[str, Any] = {"id": version.pk, "label": version.label, "status": version.status}
        if len(keep):
            basic = th.binary_metrics(p_pain=p_pain, labels=labels)
            at_threshold = th.threshold_table(p_pain=p_pain, labels=labels, thresholds=[threshold])[0]
            figures.update(
                {
                    "accuracy": basic["accuracy"],
                    "auc": basic["auc"],
                    "sensitivity": basic["sensitivity"],
                    "specificity": basic["specificity"],
                    "kappa_vs_nurse": th.cohen_kappa(list(th.predicted_pain(p_pain)), [bool(v) for v in labels]),
                    "aurc": th.aurc(p_pain=p_pain, labels=labels),
                    "ece": th.expected_calibration_error(p_pain=p_pain, labels=labels),
                    "at_unit_threshold": at_threshold,
                    "guarantee": th.guaranteed_threshold(p_pain=p_pain, labels=labels, alpha=alpha),
                }
            )
            verdicts[role] = th.predicted_pain(p_pain) == (labels == 1)
        result["models"][role] = figures
    if "candidate" in verdicts and "active" in verdicts:
        b = int((verdicts["candidate"] & ~verdicts["active"]).sum())
        c = int((~verdicts["candidate"] & verdicts["active"]).sum())
        p_value = _mcnemar_exact(b, c)
        result["mcnemar"] = {"candidate_right_active_wrong": b, "candidate_wrong_active_right": c, "p_value": p_value}
        if p_value < 0.05:
            result["verdict"] = "candidate better" if b > c else "candidate worse"
        else:
            result["verdict"] = "no significant difference"
    return result


# =============================================================================================
# Retraining from nurse decisions
# =============================================================================================


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
        if summary["n_images"] == 0:
            raise tr.DatasetError(f"no usable nurse-labelled frames for {scope} (excluded: {summary['excluded']})")
        images = tr.dataset_read(tmp)
        crops = tr.face_crops(images, settings=tr.CropSettings(detector="none"), cache_dir=cache_dir, progress=progress)
        dataset = {
            **tr.dataset_summary(crops.images),
            "source": "nurse assessments",
            "unit": unit.code if unit else None,
            "excluded": summary["excluded"],
        }
        dataset.pop("per_subject", None)
        trained = tr.train_model(crops, config=config, alpha=unit_alpha(unit), progress=progress, dataset=dataset)
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
    from django.db import transaction

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


def model_comparison_store(*, candidate: ModelVersion, comparison: dict[str, Any]) -> ModelVersion:
    """Keep the latest comparison with the candidate's metrics (``metrics["comparison"]``)."""
    from django.db import transaction

    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=candidate.pk)
        metrics = dict(locked.metrics or {})
        metrics["comparison"] = {**comparison, "compared_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        locked.metrics = json.loads(json.dumps(metrics, default=str))
        locked.save(update_fields=["metrics"])
    return locked


# =============================================================================================
# Face-detector training data
# =============================================================================================


def detector_samples(*, unit: Unit | None = None, limit: int = 5000) -> tuple[list[Any], Counter]:
    """Frames with face boxes for detector training: a nurse's latest correction, else the teacher.

    A frame the RetinaFace teacher finds no face in and no nurse corrected is left out (it
    may hold a face the teacher missed: labelling it "no face" would teach the miss). A
    nurse's "no face here" is kept as a negative image.
    """
    from inference.decode import UnreadableImage, decode_image
    from inference.detect import get_detector
    from inference.detector_training import DetectorSample, teacher_label
    from triage.models import Frame

    frames = Frame.objects.exclude(image="").order_by("-captured_at", "-id")
    if unit is not None:
        frames = frames.filter(unit=unit)
    frames = list(frames[:limit])
    corrections: dict[int, FaceBoxCorrection] = {}
    for correction in FaceBoxCorrection.objects.filter(frame__in=frames).order_by("created_at", "id"):
        corrections[correction.frame_id] = correction
    teacher = None
    counts: Counter = Counter()
    samples = []
    for frame in frames:
        try:
            with frame.image.open("rb") as handle:
                image = decode_image(handle.read())
        except (OSError, ValueError, UnreadableImage):
            counts["unreadable"] += 1
            continue
        correction = corrections.get(frame.pk)
        group = subject_pseudonym(neonate_id=frame.neonate_id)
        if correction is not None:
            boxes = (
                []
                if correction.no_face
                else [(float(correction.x), float(correction.y), float(correction.w), float(correction.h))]
            )
            counts["nurse_no_face" if correction.no_face else "nurse"] += 1
            samples.append(
                DetectorSample(image=image, boxes=boxes, group=group, source="nurse", name=f"frame-{frame.pk}")
            )
            continue
        if teacher is None:
            teacher = get_detector("retinaface")
        boxes = teacher_label(image, teacher)
        if not boxes:
            counts["teacher_missed"] += 1
            continue
        counts["teacher"] += 1
        samples.append(
            DetectorSample(image=image, boxes=boxes, group=group, source="teacher", name=f"frame-{frame.pk}")
        )
    return samples, counts
