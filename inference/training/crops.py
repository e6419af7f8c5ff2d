"""Face crops made exactly as served, cached on disk.

Same decoder, detector, margin and letterbox as :class:`inference.pipeline.Pipeline`; each
crop is cached under ``$NEOPAIN_DATA_DIR/cache/crops`` keyed by the file's sha256 plus the
detector and preprocessing, so a second run skips detection.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from inference.bundle import sha256_file
from inference.decode import UnreadableImage, decode_image
from inference.detect import DEFAULT_MARGIN, get_detector, select_face
from inference.preprocess import crop_face, letterbox
from inference.runtime import data_dir
from inference.training.datasets import LabelledImage

logger = logging.getLogger(__name__)

#: Bumped when the crop recipe changes, so old cache entries are never reused.
CROP_RECIPE_VERSION = 1


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _file_identity(path: str) -> str:
    """sha256 of a weights file, hashed once per (path, size, mtime) rather than once per image."""
    stat = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class CropSettings:
    """How a face crop is made; every field is part of the cache key.

    ``detector="none"`` means the images are already face crops (e.g. exported from the
    platform, where they are the very crops the model saw): they are only letterboxed.
    """

    detector: str = "retinaface"
    detector_weights: str | None = None
    margin: float = DEFAULT_MARGIN
    size: int = 224
    fill: tuple[int, int, int] = (0, 0, 0)

    def key(self, file_sha256: str) -> str:
        weights_id = _file_identity(self.detector_weights) if self.detector_weights else ""
        recipe = json.dumps(
            {
                "v": CROP_RECIPE_VERSION,
                "detector": self.detector,
                "weights": weights_id,
                "margin": round(float(self.margin), 6),
                "size": int(self.size),
                "fill": list(self.fill),
            },
            sort_keys=True,
        )
        return hashlib.sha256(f"{file_sha256}:{recipe}".encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fill": list(self.fill), "recipe_version": CROP_RECIPE_VERSION}


@dataclass
class CropSet:
    """Face crops of a dataset: ``images[i]`` is cropped as ``crops[i]``; skipped files say why."""

    images: list[LabelledImage]
    crops: list[Image.Image]
    file_sha256: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache_hits: int = 0
    settings: CropSettings = field(default_factory=CropSettings)

    @property
    def labels(self) -> np.ndarray:
        return np.array([image.label for image in self.images], dtype=np.int64)

    @property
    def subjects(self) -> list[str]:
        return [image.subject for image in self.images]

    def subset(self, indices: Sequence[int]) -> CropSet:
        return CropSet(
            images=[self.images[i] for i in indices],
            crops=[self.crops[i] for i in indices],
            file_sha256=[self.file_sha256[i] for i in indices],
            settings=self.settings,
        )


def default_cache_dir() -> Path:
    """``$NEOPAIN_DATA_DIR/cache``."""
    return data_dir() / "cache"


def face_crops(
    images: Sequence[LabelledImage],
    *,
    settings: CropSettings | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> CropSet:
    """Decode, detect and crop each image as the serving pipeline does, via the crop cache.

    Images without a detectable face (or unreadable) are skipped and listed, as serving
    would route them to ``no_face``/``unreadable`` rather than classify them.
    """
    settings = settings or CropSettings()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    crop_root = cache / "crops"
    detector = None
    kept: list[LabelledImage] = []
    crops: list[Image.Image] = []
    hashes: list[str] = []
    skipped: list[tuple[str, str]] = []
    hits = 0
    for image in tqdm(images, desc="face crops", unit="img", disable=not progress, file=sys.stderr, leave=False):
        data = image.path.read_bytes()
        file_sha = hashlib.sha256(data).hexdigest()
        key = settings.key(file_sha)
        png = crop_root / key[:2] / f"{key}.png"
        miss_marker = png.with_suffix(".skip")
        if png.is_file():
            crop = Image.open(png)
            crop.load()
            kept.append(image)
            crops.append(crop.convert("RGB"))
            hashes.append(file_sha)
            hits += 1
            continue
        if miss_marker.is_file():
            skipped.append((str(image.path), miss_marker.read_text()))
            hits += 1
            continue
        try:
            decoded = decode_image(data)
        except UnreadableImage as exc:
            reason = f"unreadable: {exc.reason}"
            crop = None
        else:
            if settings.detector == "none":
                crop = letterbox(decoded, settings.size, settings.fill)
                reason = ""
            else:
                if detector is None:
                    detector = get_detector(settings.detector, weights=settings.detector_weights)
                face = select_face(detector.detect(decoded), decoded.size, settings.margin)
                if face is None:
                    crop, reason = None, "no face detected"
                else:
                    crop, reason = letterbox(crop_face(decoded, face), settings.size, settings.fill), ""
        png.parent.mkdir(parents=True, exist_ok=True)
        if crop is None:
            miss_marker.write_text(reason)
            skipped.append((str(image.path), reason))
            continue
        tmp = png.with_suffix(f".{os.getpid()}.tmp")
        crop.save(tmp, format="PNG")
        os.replace(tmp, png)
        kept.append(image)
        crops.append(crop)
        hashes.append(file_sha)
    if skipped:
        logger.warning("%d of %d images skipped (no face or unreadable)", len(skipped), len(images))
    return CropSet(images=kept, crops=crops, file_sha256=hashes, skipped=skipped, cache_hits=hits, settings=settings)


def dataset_crop_settings(
    info: dict[str, Any], *, detector: str | None = None, detector_weights: str | None = None
) -> CropSettings:
    """Crop settings for a dataset: ``detector`` if named, else none on an exported (already cropped) set."""
    detector = detector or ("none" if info.get("cropped") else "retinaface")
    return CropSettings(detector=detector, detector_weights=detector_weights)
