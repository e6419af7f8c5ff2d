"""Train a NICU-specific YOLO face detector on the unit's frames and register it (kind detector)."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.management.commands._options import (
    add_json_option,
    add_seed_option,
    add_unit_option,
    fmt,
    json_line,
)
from triage.management.commands._options import unit_from_option


class Command(BaseCommand):
    help = (
        "Fine-tune an ultralytics YOLO (built from yolov8n.yaml, nothing downloaded) on the unit's frames: "
        "RetinaFace teacher boxes, overridden by nurse-corrected boxes; mAP50 on a held-out split of neonates; "
        "registers a detector model version."
    )

    def add_arguments(self, parser):
        add_unit_option(parser, help="Unit code (default: every unit's frames).")
        parser.add_argument("--epochs", type=int, default=50)
        parser.add_argument("--imgsz", type=int, default=320)
        parser.add_argument("--batch", type=int, default=8)
        parser.add_argument("--val-share", type=float, default=0.2, help="Share of neonates held out (default 0.2).")
        parser.add_argument("--max-frames", type=int, default=5000, help="Most recent frames used at most.")
        parser.add_argument("--model-yaml", default="yolov8n.yaml")
        add_seed_option(parser)
        parser.add_argument(
            "--out", default=None, help="Working folder (default $NEOPAIN_DATA_DIR/detector-training/...)."
        )
        parser.add_argument("--no-register", action="store_true")
        add_json_option(parser)

    def handle(self, *args, **options):
        from annotations.training_sets import detector_samples
        from inference import detector_training as dtr
        from triage.models import ModelVersion
        from triage.services import model_version_register

        unit = unit_from_option(code=options["unit"])
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        scope = unit.code if unit else "all"
        out = (
            Path(options["out"])
            if options["out"]
            else Path(settings.DATA_DIR) / "detector-training" / f"{scope}-{stamp}"
        )
        start = time.perf_counter()
        samples, counts = detector_samples(unit=unit, limit=options["max_frames"])
        self.stdout.write(
            f"Frames: {len(samples)} labelled ({counts.get('nurse', 0)} nurse-corrected, {counts.get('teacher', 0)} "
            f"RetinaFace teacher, {counts.get('nurse_no_face', 0)} nurse 'no face'); left out: "
            f"{counts.get('teacher_missed', 0)} the teacher found no face in and no nurse corrected, "
            f"{counts.get('unreadable', 0)} unreadable"
        )
        try:
            dataset = dtr.yolo_dataset_write(
                samples, out / "dataset", val_share=options["val_share"], seed=options["seed"]
            )
        except ValueError as exc:
            raise CommandError(f"Not enough labelled frames: {exc}") from exc
        self.stdout.write(f"Split by neonate: {len(dataset.train)} train, {len(dataset.val)} held-out frames")
        weights = dtr.yolo_train(
            dataset,
            out=out,
            epochs=options["epochs"],
            imgsz=options["imgsz"],
            batch=options["batch"],
            seed=options["seed"],
            model_yaml=options["model_yaml"],
        )
        yolo = dtr.detector_evaluate(dtr.yolo_detect_function(weights, imgsz=options["imgsz"]), dataset.val)
        from inference.detect import get_detector

        teacher = dtr.detector_evaluate(dtr.teacher_detect_function(get_detector("retinaface")), dataset.val)
        nurse_val = [s for s in dataset.val if s.source == "nurse"]
        metrics = {
            "map50": yolo["map50"],
            "teacher_map50": teacher["map50"],
            "n_train": len(dataset.train),
            "n_val": len(dataset.val),
            "n_val_boxes": yolo["n_boxes"],
            "n_nurse_corrected": counts.get("nurse", 0) + counts.get("nurse_no_face", 0),
            "n_teacher": counts.get("teacher", 0),
            "epochs": options["epochs"],
            "imgsz": options["imgsz"],
            "model_yaml": options["model_yaml"],
            "evaluation": "AP at IoU 0.5 on held-out neonates' labels (teacher boxes, nurse boxes override)",
            "train_seconds": round(time.perf_counter() - start, 1),
        }
        if nurse_val:
            metrics["map50_nurse_boxes"] = dtr.detector_evaluate(
                dtr.yolo_detect_function(weights, imgsz=options["imgsz"]), nurse_val
            )["map50"]
            metrics["teacher_map50_nurse_boxes"] = dtr.detector_evaluate(
                dtr.teacher_detect_function(get_detector("retinaface")), nurse_val
            )["map50"]
        target = Path(settings.MODELS_DIR) / f"face-yolo-{scope}-{stamp}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(weights, target)
        self.stdout.write(
            f"Weights: {target}; mAP50 on held-out labels {fmt(metrics['map50'])} "
            f"(RetinaFace teacher {fmt(metrics['teacher_map50'])}"
            + (
                f"; on nurse-corrected boxes {fmt(metrics['map50_nurse_boxes'])} vs teacher {fmt(metrics['teacher_map50_nurse_boxes'])}"
                if nurse_val
                else ""
            )
            + ")"
        )
        result = {"weights": str(target), "metrics": metrics}
        if not options["no_register"]:
            try:
                version = model_version_register(
                    bundle_path=target, kind=ModelVersion.Kind.DETECTOR, unit=unit, metrics=metrics
                )
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            result["model_version_id"] = version.pk
            self.stdout.write(
                f"Registered detector model version {version.pk}; activate with `manage.py activate_model {version.pk}`"
            )
        if options["json"]:
            self.stdout.write(json_line(result))
