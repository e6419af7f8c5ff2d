"""Frames in, :class:`~inference.outcome.FrameOutcome` out: decode -> detect -> crop -> classify.

A batch of frames is decoded one by one (a bad frame becomes an ``unreadable`` outcome,
never an exception), detected in one backend call where the backend batches, cropped and
letterboxed, then classified together: one batched ``predict_proba`` call for all faces
of the batch (split into forward passes of at most the model's ``max_batch``). Stage
timings are measured per frame for decode and amortised over the batch for detect and
classify.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from inference.bundle import LoadedModel
from inference.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, UnreadableImage, decode_image
from inference.faces import DEFAULT_MARGIN, FaceBox, FaceDetector, select_face
from inference.outcome import (
    STATUS_NO_FACE,
    STATUS_OK,
    STATUS_UNREADABLE,
    FrameOutcome,
    Label,
    empty_timings,
)
from inference.preprocess import crop_face, letterbox

logger = logging.getLogger(__name__)


@dataclass
class _Work:
    """Per-frame state while a batch moves through the stages."""

    frame_sha256: str
    timings: dict[str, float] = field(default_factory=empty_timings)
    image: Image.Image | None = None
    #: The decoded frame as a ``uint8 (3, H, W)`` tensor on the device (:class:`~inference.tensor_pipeline.TensorPipeline`).
    tensor: Any = None
    reason: str = ""
    face: FaceBox | None = None
    crop: Image.Image | None = None
    #: The crop as JPEG bytes when the stage that cut it also encoded it (GPU path), else ``None``.
    crop_jpeg: bytes | None = None
    p_pain: float | None = None
    saliency_map: Any = None
    #: ``(embedding, mirrored embedding or None)`` for a model with a per-neonate baseline.
    embedding: Any = None


class Pipeline:
    """A loaded model plus a face detector, applied to batches of raw frame bytes."""

    def __init__(
        self,
        model: LoadedModel,
        detector: FaceDetector,
        *,
        margin: float = DEFAULT_MARGIN,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        saliency: bool = False,
    ) -> None:
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.model = model
        self.detector = detector
        self.margin = margin
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        #: Also compute a Grad-CAM map per classified frame, from the classifier's own forward pass.
        self.saliency = saliency

    def run(self, data: bytes) -> FrameOutcome:
        """Outcome for a single frame."""
        return self.run_batch([data])[0]

    def run_batch(self, inputs: Sequence[bytes]) -> list[FrameOutcome]:
        """Outcomes for ``inputs`` in the same order.

        A bad frame (undecodable, no face, even a detector crash on it) becomes an
        ``unreadable`` or ``no_face`` outcome. Only a failure of the classifier itself
        (e.g. CUDA out of memory) raises, so the caller can retry the whole batch.
        """
        work = [self._decode(data) for data in inputs]
        self._detect(work)
        self._classify(work)
        return [self._outcome(item) for item in work]

    # ------------------------------------------------------------------ stages

    def _decode(self, data: bytes) -> _Work:
        start = time.perf_counter()
        raw = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
        item = _Work(frame_sha256=hashlib.sha256(raw).hexdigest() if isinstance(raw, bytes) else "")
        try:
            item.image = decode_image(raw, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        except UnreadableImage as exc:
            item.reason = exc.reason
        except Exception as exc:  # a decoder bug must cost one frame, not the batch
            logger.exception("unexpected error decoding a frame")
            item.reason = f"decoder error ({type(exc).__name__}: {exc})"
        item.timings["decode"] = _ms_since(start)
        return item

    def _detect(self, work: list[_Work]) -> None:
        pending = [(item, item.image) for item in work if item.image is not None]
        if not pending:
            return
        start = time.perf_counter()
        try:
            detections = self.detector.detect_batch([image for _, image in pending])
        except Exception:
            logger.exception("batched face detection failed; retrying frame by frame")
            detections = [self._detect_one(item, image) for item, image in pending]
        share = _ms_since(start) / len(pending)
        for (item, image), boxes in zip(pending, detections):
            item.timings["detect"] = share
            item.face = select_face(boxes, image.size, self.margin)
            if item.face is None and not item.reason:
                item.reason = "no face detected"

    def _detect_one(self, item: _Work, image: Image.Image) -> list[FaceBox]:
        try:
            return self.detector.detect(image)
        except Exception as exc:
            logger.exception("face detection failed on a frame")
            item.reason = f"face detection failed ({type(exc).__name__}: {exc})"
            return []

    def _classify(self, work: list[_Work]) -> None:
        ready = [item for item in work if item.face is not None and item.image is not None]
        if not ready:
            return
        start = time.perf_counter()
        size = int(self.model.spec["size"])
        fill = self.model.spec["fill"]
        crops: list[Image.Image] = []
        for item in ready:
            if item.image is not None and item.face is not None:
                item.crop = letterbox(crop_face(item.image, item.face), size, fill)
                crops.append(item.crop)
        if self.model.metadata.get("baseline"):
            self._classify_cold_start(ready, crops, start)
            return
        probabilities = self._classify_with_saliency(ready, crops) if self.saliency else None
        if probabilities is None:
            probabilities = self.model.predict_proba(crops)
        share = _ms_since(start) / len(ready)
        pain = self.model.pain_index
        for item, row in zip(ready, probabilities):
            item.timings["classify"] = share
            item.p_pain = float(row[pain])

    def _classify_cold_start(self, ready: list[_Work], crops: list[Image.Image], start: float) -> None:
        """A baseline model: keep each crop's embeddings and score it against the cold-start reference.

        The caller that knows the neonate (the worker) rescores it against that neonate's baseline
        (:func:`inference.baseline.model_p_pain`). No Grad-CAM: the map would explain the score
        before the baseline, not the one the nurse sees.
        """
        from inference.baseline import model_embeddings, model_p_pain

        embeddings, flipped = model_embeddings(self.model, crops)
        p_pain = model_p_pain(self.model, embeddings, flipped, [None] * len(crops))
        share = _ms_since(start) / len(ready)
        for i, item in enumerate(ready):
            item.timings["classify"] = share
            item.p_pain = float(p_pain[i])
            item.embedding = (embeddings[i], flipped[i] if flipped is not None else None)

    def _classify_with_saliency(self, ready: list[_Work], crops: list[Image.Image]) -> Any:
        """``predict_proba``'s probabilities plus a Grad-CAM map per crop, from the same forward passes.

        A separate Grad-CAM pass per nurse-routed frame cost the worker a second, unbatched
        forward pass (half its time with MobileNetV2 on CPU; scripts/bench_worker.py). Returns
        ``None`` (the caller classifies without maps) if Grad-CAM fails: maps are a nicety.
        """
        import torch

        from inference.saliency import gradcam_batch

        model = self.model
        try:
            logits, maps = [], []
            for offset in range(0, len(crops), model.max_batch):
                with torch.inference_mode(False):
                    batch = model.to_tensor(crops[offset : offset + model.max_batch])
                chunk_logits, chunk_maps = gradcam_batch(model, batch)
                logits.append(chunk_logits.float().cpu())
                maps.extend(chunk_maps)
        except Exception:
            logger.exception("Grad-CAM with the classification failed; classifying without saliency maps")
            return None
        for item, cam in zip(ready, maps):
            item.saliency_map = cam
        return torch.softmax(torch.cat(logits) / model.temperature, dim=1).numpy()

    def _outcome(self, item: _Work) -> FrameOutcome:
        common: dict[str, Any] = {
            "model_name": self.model.name,
            "model_version": self.model.version,
            "weights_sha256": self.model.sha256,
            "frame_sha256": item.frame_sha256,
            "timings_ms": item.timings,
        }
        if item.image is None and item.tensor is None:
            return FrameOutcome(status=STATUS_UNREADABLE, reason=item.reason, **common)
        if item.face is None or item.crop is None or item.p_pain is None:
            return FrameOutcome(status=STATUS_NO_FACE, reason=item.reason or "no face detected", **common)
        p_pain = item.p_pain
        label: Label = "pain" if p_pain >= 0.5 else "nonpain"
        return FrameOutcome(
            status=STATUS_OK,
            reason="",
            box=item.face.as_tuple(),
            crop=item.crop,
            p_pain=p_pain,
            label=label,
            confidence=p_pain if label == "pain" else 1.0 - p_pain,
            face_score=item.face.score,
            saliency_map=item.saliency_map,
            crop_jpeg=item.crop_jpeg,
            embedding=item.embedding,
            **common,
        )


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
