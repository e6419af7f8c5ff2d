"""The NICU face detector: labels from the teacher and nurses, a YOLO trained offline, mAP50."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from annotations.learning import detector_samples
from annotations.models import FaceBoxCorrection
from inference.detector_training import DetectorSample, average_precision_50, split_by_group
from tests.factories import FrameFactory, NeonateFactory
from tests.learning.conftest import last_json_line
from tests.learning.planted import planted_frame
from triage.models import ModelVersion


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_ap50_counts_matches_at_iou_half():
    truth = [[(10, 10, 20, 20)], [(0, 0, 10, 10)]]
    assert average_precision_50([[((10, 10, 20, 20), 0.9)], [((0, 0, 10, 10), 0.8)]], truth) == pytest.approx(1.0)
    assert average_precision_50([[], []], truth) == 0.0
    # One hit, one box shifted off (IoU < 0.5) with the higher score: precision 1/2 at recall 1/2.
    shifted = [[((10, 10, 20, 20), 0.5)], [((6, 6, 10, 10), 0.9)]]
    assert average_precision_50(shifted, truth) == pytest.approx(0.25)
    assert average_precision_50([[]], [[]]) is None


def test_holdout_keeps_a_neonates_frames_together():
    from PIL import Image

    samples = [DetectorSample(image=Image.new("RGB", (8, 8)), boxes=[], group=f"g{i % 5}") for i in range(20)]
    train, val = split_by_group(samples, val_share=0.2, seed=1)
    assert {s.group for s in train}.isdisjoint({s.group for s in val}) and len(val) == 4


@pytest.mark.django_db
def test_train_face_detector_trains_a_yolo_and_registers_it(unit, nurse, tmp_path):
    frames = []
    for i in range(4):
        neonate = NeonateFactory(unit=unit)
        for k in range(2):
            image = planted_frame(subject=i, index=k, pain=False, size=128)
            frames.append(FrameFactory(neonate=neonate, content=png(image), width=128, height=128))
    # A nurse redraws one box and marks another frame as faceless: both override the teacher.
    FaceBoxCorrection.objects.create(frame=frames[0], nurse=nurse, x=30, y=20, w=60, h=70)
    FaceBoxCorrection.objects.create(frame=frames[1], nurse=nurse, x=0, y=0, w=0, h=0, no_face=True)
    samples, counts = detector_samples(unit=unit)
    by_name = {s.name: s for s in samples}
    assert by_name[f"frame-{frames[0].pk}"].boxes == [(30.0, 20.0, 60.0, 70.0)]
    assert by_name[f"frame-{frames[1].pk}"].boxes == []
    assert counts["nurse"] == 1 and counts["nurse_no_face"] == 1 and counts["teacher"] == 6

    out = io.StringIO()
    call_command(
        "train_face_detector",
        "--unit",
        unit.code,
        "--epochs",
        "1",
        "--imgsz",
        "64",
        "--batch",
        "4",
        "--out",
        str(tmp_path / "yolo"),
        "--json",
        stdout=out,
    )
    result = last_json_line(out.getvalue())
    version = ModelVersion.objects.get(pk=result["model_version_id"])
    assert version.kind == ModelVersion.Kind.DETECTOR and version.unit == unit
    assert version.status == ModelVersion.Status.CANDIDATE
    assert "map50" in version.metrics and 0.0 <= (version.metrics["map50"] or 0.0) <= 1.0
    assert version.metrics["teacher_map50"] is not None
    assert version.metrics["n_train"] + version.metrics["n_val"] == 8
    # The registered weights load as the serving YOLO backend.
    from inference.detect import YoloDetector

    YoloDetector(version.bundle_path, imgsz=64).detect(samples[0].image)
