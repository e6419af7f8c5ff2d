"""Train a NICU-specific YOLO face detector from the unit's own frames: pure Python, no Django.

Labels: the shipped RetinaFace teacher's box on each frame, overridden by the box a nurse
drew in the case view (a nurse's "no face here" becomes an image with no box: a
negative). ultralytics builds the network from ``yolov8n.yaml`` (random initialisation,
nothing downloaded: ``YOLO_OFFLINE=1``), trains on a group-wise split (a neonate's frames
stay on one side) and is scored by AP at IoU 0.5 (mAP50 for one class) on the held-out
labels, with the same code for the YOLO model and for the RetinaFace teacher.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # x, y, w, h in pixels


@dataclass
class DetectorSample:
    """One frame for detector training: its image, face boxes (empty = no face) and group."""

    image: Image.Image
    boxes: list[Box]
    group: str
    source: str = "teacher"  # teacher | nurse | none
    name: str = ""


@dataclass
class DetectorDataset:
    """A YOLO-format dataset on disk and what went into each split."""

    root: Path
    data_yaml: Path
    train: list[DetectorSample] = field(default_factory=list)
    val: list[DetectorSample] = field(default_factory=list)


def yolo_environment(config_dir: str | os.PathLike[str] | None = None) -> Path:
    """Offline ultralytics with a writable settings folder; call before importing ultralytics."""
    from inference.detect import import_ultralytics_offline

    if config_dir:
        Path(config_dir).mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    import_ultralytics_offline()
    return Path(os.environ["YOLO_CONFIG_DIR"])


def teacher_label(image: Image.Image, detector: Any) -> list[Box]:
    """The teacher's boxes for one image (all faces it finds, tight boxes without margin)."""
    return [(float(b.x), float(b.y), float(b.w), float(b.h)) for b in detector.detect(image)]


def split_by_group(samples: Sequence[DetectorSample], *, val_share: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Group-wise holdout (a neonate's frames on one side); per-image when there is one group."""
    groups = sorted({s.group for s in samples})
    rng = random.Random(f"detector-split:{seed}")
    if len(groups) >= 2:
        n_val = min(len(groups) - 1, max(1, round(len(groups) * val_share)))
        val_groups = set(rng.sample(groups, n_val))
        return [s for s in samples if s.group not in val_groups], [s for s in samples if s.group in val_groups]
    indices = list(range(len(samples)))
    rng.shuffle(indices)
    n_val = max(1, round(len(samples) * val_share)) if len(samples) > 1 else 0
    val = set(indices[:n_val])
    return [s for i, s in enumerate(samples) if i not in val], [s for i, s in enumerate(samples) if i in val]


def yolo_dataset_write(
    samples: Sequence[DetectorSample], out: str | os.PathLike[str], *, val_share: float = 0.2, seed: int = 0
) -> DetectorDataset:
    """Write ``images/{train,val}``, ``labels/{train,val}`` (class cx cy w h, normalised) and ``data.yaml``."""
    root = Path(out)
    if root.exists():
        shutil.rmtree(root)
    train, val = split_by_group(samples, val_share=val_share, seed=seed)
    if not train or not val:
        raise ValueError(f"need frames on both sides of the split (train {len(train)}, val {len(val)})")
    for split, items in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for index, sample in enumerate(items):
            stem = sample.name or f"{split}-{index:05d}"
            sample.image.convert("RGB").save(root / "images" / split / f"{stem}.jpg", quality=95)
            width, height = sample.image.size
            lines = []
            for x, y, w, h in sample.boxes:
                cx, cy = (x + w / 2) / width, (y + h / 2) / height
                lines.append(f"0 {cx:.6f} {cy:.6f} {w / width:.6f} {h / height:.6f}")
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data_yaml = root / "data.yaml"
    data_yaml.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: face\n")
    return DetectorDataset(root=root, data_yaml=data_yaml, train=list(train), val=list(val))


def yolo_train(
    dataset: DetectorDataset,
    *,
    out: str | os.PathLike[str],
    epochs: int = 50,
    imgsz: int = 320,
    batch: int = 8,
    seed: int = 0,
    model_yaml: str = "yolov8n.yaml",
    device: str = "cpu",
) -> Path:
    """Train a YOLO detector from ``model_yaml`` (random init, offline); return the best weights path."""
    yolo_environment()
    from ultralytics import YOLO

    project = Path(out).resolve()
    model = YOLO(model_yaml)
    model.train(
        data=str(dataset.data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        seed=seed,
        deterministic=True,
        device=device,
        workers=0,
        amp=False,  # the AMP self-check downloads a model
        plots=False,
        project=str(project),
        name="train",
        exist_ok=True,
        verbose=False,
        single_cls=True,
    )
    weights = project / "train" / "weights"
    best = weights / "best.pt"
    return best if best.is_file() else weights / "last.pt"


def _iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def average_precision_50(
    predictions: Sequence[Sequence[tuple[Box, float]]], truths: Sequence[Sequence[Box]]
) -> float | None:
    """AP at IoU >= 0.5 over images (all-point interpolation, VOC 2010+); mAP50 for one class.

    ``predictions[i]`` are (box, score) for image i, ``truths[i]`` its labelled boxes. None
    when there is no labelled box at all (AP undefined).
    """
    n_truth = sum(len(t) for t in truths)
    if n_truth == 0:
        return None
    scored = []
    for image_index, preds in enumerate(predictions):
        for box, score in preds:
            scored.append((float(score), image_index, box))
    scored.sort(key=lambda item: -item[0])
    matched = [np.zeros(len(t), dtype=bool) for t in truths]
    tp = np.zeros(len(scored))
    for k, (_, image_index, box) in enumerate(scored):
        candidates = truths[image_index]
        best, best_j = 0.0, -1
        for j, truth in enumerate(candidates):
            overlap = _iou(box, truth)
            if overlap > best:
                best, best_j = overlap, j
        if best >= 0.5 and not matched[image_index][best_j]:
            matched[image_index][best_j] = True
            tp[k] = 1
    if not scored:
        return 0.0
    cum_tp = np.cumsum(tp)
    recall = cum_tp / n_truth
    precision = cum_tp / np.arange(1, len(scored) + 1)
    # Precision envelope, then area under the step function of recall.
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([1.0], precision, [0.0]))
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def detector_evaluate(
    detect: Callable[[Image.Image], list[tuple[Box, float]]], samples: Sequence[DetectorSample]
) -> dict[str, Any]:
    """mAP50 of ``detect`` (image -> [(box, score)]) against the samples' labelled boxes."""
    predictions = [detect(sample.image) for sample in samples]
    truths = [sample.boxes for sample in samples]
    return {
        "map50": average_precision_50(predictions, truths),
        "n_images": len(samples),
        "n_boxes": sum(len(t) for t in truths),
        "n_nurse_boxes": sum(len(s.boxes) for s in samples if s.source == "nurse"),
    }


def yolo_detect_function(weights: str | os.PathLike[str], *, imgsz: int = 320, conf: float = 0.001) -> Callable:
    """A ``detect`` callable over a trained YOLO weights file (low confidence floor, for AP)."""
    yolo_environment()
    from ultralytics import YOLO

    model = YOLO(str(weights))

    def detect(image: Image.Image) -> list[tuple[Box, float]]:
        result = model.predict(image.convert("RGB"), imgsz=imgsz, conf=conf, device="cpu", verbose=False)[0]
        boxes = result.boxes
        out = []
        for (x0, y0, x1, y1), score in zip(boxes.xyxy.cpu().numpy().tolist(), boxes.conf.cpu().numpy().tolist()):
            out.append(((x0, y0, x1 - x0, y1 - y0), float(score)))
        return out

    return detect


def teacher_detect_function(detector: Any) -> Callable:
    """The RetinaFace teacher as a ``detect`` callable (for the same mAP50 on nurse boxes)."""

    def detect(image: Image.Image) -> list[tuple[Box, float]]:
        return [((float(b.x), float(b.y), float(b.w), float(b.h)), float(b.score)) for b in detector.detect(image)]

    return detect
