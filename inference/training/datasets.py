"""Labelled training images: the folder layout, CSV manifests and ``dataset.json`` markers.

Layouts: ``DIR/<subject_id>/<pain|nonpain>/*.jpg|png`` (COPE/MNPAD-derived sets), or a CSV
manifest with columns ``path, subject, label`` (paths relative to the CSV). A folder may
instead hold ``manifest.csv``. A folder written by ``export_training_set`` has
``dataset.json`` with ``"cropped": true``: its images are already the served face crops.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: Folder / manifest label spellings accepted (COPE-style names included).
LABEL_NAMES: dict[str, int] = {
    "pain": 1,
    "nonpain": 0,
    "non-pain": 0,
    "non_pain": 0,
    "nopain": 0,
    "no_pain": 0,
    "1": 1,
    "0": 0,
}
DATASET_MARKER = "dataset.json"
MANIFEST_NAME = "manifest.csv"


@dataclass(frozen=True)
class LabelledImage:
    """One training image: file, subject (neonate) id and label (1 pain, 0 nonpain)."""

    path: Path
    subject: str
    label: int


class DatasetError(ValueError):
    """The dataset folder or manifest cannot be used; the message says why."""


def _label_of(raw: str, where: str) -> int:
    key = raw.strip().lower()
    if key not in LABEL_NAMES:
        raise DatasetError(f"{where}: label {raw!r} is neither pain nor nonpain")
    return LABEL_NAMES[key]


def manifest_read(path: str | os.PathLike[str]) -> list[LabelledImage]:
    """Rows of a CSV manifest with columns ``path, subject, label`` (relative paths: to the CSV)."""
    path = Path(path)
    images = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "subject", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: manifest lacks column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            image_path = Path(row["path"].strip())
            if not image_path.is_absolute():
                image_path = path.parent / image_path
            if not image_path.is_file():
                raise DatasetError(f"{path}:{line}: no such image {image_path}")
            subject = row["subject"].strip()
            if not subject:
                raise DatasetError(f"{path}:{line}: empty subject")
            images.append(LabelledImage(image_path, subject, _label_of(row["label"], f"{path}:{line}")))
    return images


def dataset_scan(root: str | os.PathLike[str]) -> list[LabelledImage]:
    """Images under ``root/<subject>/<pain|nonpain>/`` in a stable order."""
    root = Path(root)
    images = []
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for label_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            label = _label_of(label_dir.name, str(label_dir))
            for image_path in sorted(label_dir.iterdir()):
                if image_path.suffix.lower() in IMAGE_SUFFIXES and image_path.is_file():
                    images.append(LabelledImage(image_path, subject_dir.name, label))
    return images


def dataset_read(source: str | os.PathLike[str]) -> list[LabelledImage]:
    """A dataset from a folder (layout or ``manifest.csv`` inside) or a CSV manifest file."""
    source = Path(source).expanduser()
    if source.is_file():
        images = manifest_read(source)
    elif source.is_dir():
        images = manifest_read(source / MANIFEST_NAME) if (source / MANIFEST_NAME).is_file() else dataset_scan(source)
    else:
        raise DatasetError(f"no dataset at {source}")
    if not images:
        raise DatasetError(f"{source}: no images found (expected <subject>/<pain|nonpain>/*.jpg|png or a manifest)")
    return images


def dataset_info(source: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``dataset.json`` marker of a folder written by ``export_training_set`` (else ``{}``)."""
    source = Path(source)
    marker = (source if source.is_dir() else source.parent) / DATASET_MARKER
    if marker.is_file():
        return json.loads(marker.read_text())
    return {}


def dataset_summary(images: Sequence[LabelledImage]) -> dict[str, Any]:
    """Counts a bundle's metadata and the admin page show: images, pain share, subjects."""
    per_subject: dict[str, dict[str, int]] = {}
    for image in images:
        entry = per_subject.setdefault(image.subject, {"pain": 0, "nonpain": 0})
        entry["pain" if image.label else "nonpain"] += 1
    n_pain = sum(image.label for image in images)
    return {
        "n_images": len(images),
        "n_pain": n_pain,
        "n_nonpain": len(images) - n_pain,
        "n_subjects": len(per_subject),
        "per_subject": per_subject,
    }
