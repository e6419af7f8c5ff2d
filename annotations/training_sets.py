"""Training sets written from nurse decisions: face crops for PainNet, framed boxes for the detector."""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from annotations.models import FaceBoxCorrection
from annotations.nurse_labels import label_source_counts, nurse_labels, subject_pseudonym
from annotations.observations import LabelSource
from triage.models import Unit

logger = logging.getLogger(__name__)


LABEL_RULES = {
    LabelSource.NIPS_RULE: "the NIPS pain verdict of the unit's rule in force, from complete observations only "
    "(all six items observed; face-only and partial reviews give none)",
    LabelSource.FACE_ITEM: "the NIPS facial expression item (grimace = pain), from any assessment that scored it",
    LabelSource.NURSE_CALL: "the nurse's own pain / no pain call",
}


def training_set_export(
    *, unit: Unit | None = None, out_dir: str | os.PathLike[str], source: LabelSource | str = LabelSource.NIPS_RULE
) -> dict[str, Any]:
    """Write nurse-labelled face crops as ``out_dir/<subject>/<pain|nonpain>/<frame sha>.png``.

    Crops are made as serving makes them (decode, crop the prediction's box or the nurse's
    corrected box, letterbox to 224), so ``train_model`` runs no detector on them
    (``dataset.json`` says ``"cropped": true``). Also writes ``manifest.csv`` (path, subject,
    label, frame_id, case_id, box_source, origin: uncertain / double-scored / audit, see
    :func:`annotations.nurse_labels.label_origin`; methods: how the labelling assessments observed
    the baby). Labels come from ``source`` (``--label-source``: nips_rule, face_item, nurse_call);
    the summary also says how many labels each source would give (``label_sources``). Returns the
    summary that ``dataset.json`` holds.
    """
    from inference.decode import UnreadableImage, decode_image
    from inference.preprocess import CROP_SIZE, DEFAULT_FILL, crop_face, letterbox
    from triage.models import Frame

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = LabelSource(source)
    labels, excluded = nurse_labels(unit=unit, source=source)
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
                label.origin,
                label.methods,
            ]
        )
    with (out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "subject", "label", "frame_id", "case_id", "box_source", "origin", "methods"])
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
        # Only audit labels are a random sample of automatic verdicts: the ones to calibrate on.
        "origins": {
            origin: sum(1 for r in rows if r[6] == origin) for origin in ("uncertain", "double-scored", "audit")
        },
        "label_source": source.value,
        "label_rule": LABEL_RULES[source] + "; double-scored cases only when the nurses agree",
        # Usable labels each source gives on these decided cases (before one-per-frame and no-face checks).
        "label_sources": label_source_counts(unit=unit),
        # How the baby was observed for the labels written ("unrecorded": from before it was asked).
        "methods": dict(Counter(r[7] for r in rows)),
        "subject_id": "pseudonym nb-HMAC-SHA256(neonate pk), see annotations.learning",
    }
    (out / "dataset.json").write_text(json.dumps(summary, indent=2))
    return summary


def audit_flags(export_dir: str | os.PathLike[str], images: list[Any]) -> list[bool]:
    """Per image of a set written by :func:`training_set_export`: is its label an audit label?

    Read from ``manifest.csv``'s ``origin`` column; ``train_model`` sets the guarantee on these
    (a random share of automatic verdicts, scored blind) when there are enough of them.
    """
    root = Path(export_dir)
    with (root / "manifest.csv").open(newline="") as handle:
        audit = {(root / row["path"]).resolve() for row in csv.DictReader(handle) if row.get("origin") == "audit"}
    return [Path(image.path).resolve() in audit for image in images]


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
