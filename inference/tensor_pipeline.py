"""The pipeline with every stage on the model's device: the GPU worker's path.

:class:`TensorPipeline` gives the same outcomes as :class:`inference.pipeline.Pipeline` (same
detector thresholds, face choice, margin, letterbox and classifier) but keeps frames as tensors:
JPEGs decoded in batches on the device, RetinaFace on PyTorch over the whole batch, crops cut and
letterboxed with ``roi_align`` (:mod:`inference.tensor_ops`), the classifier under bf16 autocast
in channels-last on CUDA (``NEOPAIN_CLASSIFIER_PRECISION``). A batch is cut into chunks and the
next chunk's reading, hashing and decoding runs in a helper thread while the current chunk is
detected and classified, so the GPU does not wait for the CPU between chunks.

Used by :func:`inference.pipeline.get_pipeline` when the device is CUDA and the detector is
RetinaFace on PyTorch; the CPU keeps :class:`~inference.pipeline.Pipeline` (PIL, ONNX Runtime).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from inference.faces import select_face
from inference.outcome import FrameOutcome
from inference.pipeline_base import Pipeline, _ms_since, _Work
from inference.runtime import classifier_precision
from inference.tensor_ops import crop_letterbox, crops_to_jpeg, crops_to_pil, decode_frames, normalise_crops

logger = logging.getLogger(__name__)

#: Frames per chunk: decoded while the previous chunk is on the GPU.
DEFAULT_CHUNK = 128
#: Threads encoding the crops' JPEGs (Pillow releases the GIL while it encodes).
JPEG_THREADS = 4
#: Crops per classifier forward pass on CUDA (at least; a bundle loaded with a larger max_batch keeps it).
CUDA_CLASSIFY_BATCH = 256


class TensorPipeline(Pipeline):
    """:class:`~inference.pipeline.Pipeline` with decode, detect, crop and classify as batched tensor work."""

    def __init__(self, *args, chunk: int = DEFAULT_CHUNK, precision: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.detector, "detect_tensors"):
            raise ValueError(f"{type(self.detector).__name__} cannot detect on tensors; use Pipeline")
        self.device = self.model.device
        self.chunk = chunk
        self.precision = classifier_precision(self.device, precision)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neopain-decode")
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        #: Also encode each crop as a JPEG in a thread pool (CUDA only: on a CPU the cores are busy anyway).
        self.encode_crops = self.device.type == "cuda"
        self._encoder = ThreadPoolExecutor(max_workers=JPEG_THREADS, thread_name_prefix="neopain-jpeg")

    def run_batch(self, inputs: Sequence[bytes]) -> list[FrameOutcome]:
        """Outcomes for ``inputs`` in order (chunks of :attr:`chunk`, the next one decoded meanwhile)."""
        chunks = [inputs[start : start + self.chunk] for start in range(0, len(inputs), self.chunk)]
        return [outcome for outcomes in self.run_stream(chunks) for outcome in outcomes]

    def run_stream(self, batches: Iterable[Sequence[bytes]]) -> Iterator[list[FrameOutcome]]:
        """Outcomes per batch of ``batches``; batch ``k + 1`` is read and decoded while batch ``k`` is scored."""
        iterator = iter(batches)
        pending: Future | None = None
        first = next(iterator, None)
        if first is not None:
            pending = self._reader.submit(self._decode_batch, first)
        while pending is not None:
            work = pending.result()
            following = next(iterator, None)
            pending = self._reader.submit(self._decode_batch, following) if following is not None else None
            yield self._score(work)

    # ------------------------------------------------------------------ stages

    def _decode_batch(self, inputs: Sequence[bytes]) -> list[_Work]:
        start = time.perf_counter()
        stream = self._stream
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            frames = decode_frames(inputs, self.device, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
            if stream is not None:
                stream.synchronize()  # the tensors are complete before another stream reads them
        share = _ms_since(start) / max(1, len(inputs))
        work = []
        for frame in frames:
            item = _Work(frame_sha256=frame.sha256, reason=frame.reason, tensor=frame.tensor)
            item.timings["decode"] = share
            work.append(item)
        return work

    def _score(self, work: list[_Work]) -> list[FrameOutcome]:
        if self._stream is not None:  # decoded on the reader's stream, read on this one
            for item in work:
                if item.tensor is not None:
                    item.tensor.record_stream(torch.cuda.current_stream(self.device))
        self._detect_tensors(work)
        self._classify_tensors(work)
        outcomes = [self._outcome(item) for item in work]
        for item in work:
            item.tensor = None  # device memory back to the allocator before the next chunk
        return outcomes

    def _detect_tensors(self, work: list[_Work]) -> None:
        pending = [item for item in work if item.tensor is not None]
        if not pending:
            return
        start = time.perf_counter()
        try:
            detections = self.detector.detect_tensors([item.tensor for item in pending])
        except Exception as exc:  # a detector crash costs this chunk's faces, never the worker
            logger.exception("batched face detection on tensors failed")
            detections = [[] for _ in pending]
            for item in pending:
                item.reason = f"face detection failed ({type(exc).__name__}: {exc})"
        share = _ms_since(start) / len(pending)
        for item, boxes in zip(pending, detections):
            item.timings["detect"] = share
            size = (int(item.tensor.shape[-1]), int(item.tensor.shape[-2]))
            item.face = select_face(boxes, size, self.margin)
            if item.face is None and not item.reason:
                item.reason = "no face detected"

    def _classify_tensors(self, work: list[_Work]) -> None:
        ready = [item for item in work if item.face is not None and item.tensor is not None]
        if not ready:
            return
        start = time.perf_counter()
        model = self.model
        letterboxed = crop_letterbox(
            [item.tensor for item in ready],
            [item.face.as_tuple() for item in ready],
            int(model.spec["size"]),
            model.spec["fill"],
        )
        crops = crops_to_pil(letterboxed)
        for item, crop in zip(ready, crops):
            item.crop = crop
        if self.encode_crops:
            # The worker's stored display copy, encoded by the pool's threads here rather than one by
            # one in the worker's own thread later (~0.5 ms of CPU per crop).
            for item, data in zip(ready, crops_to_jpeg(crops, self._encoder)):
                item.crop_jpeg = data
        probabilities = self._classify_with_saliency(ready, crops) if self.saliency else None
        if probabilities is None:
            probabilities = self.classify_letterboxed(letterboxed)
        share = _ms_since(start) / len(ready)
        for item, row in zip(ready, probabilities):
            item.timings["classify"] = share
            item.p_pain = float(row[model.pain_index])

    def classify_letterboxed(self, letterboxed: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(K, classes)`` on the CPU for letterboxed 0..255 crops on the device."""
        model = self.model
        logits = []
        autocast = self.precision == "bf16" and self.device.type == "cuda"
        # The bundle's CUDA default (64 crops per pass) leaves an H200 mostly idle on these small models.
        step = max(model.max_batch, CUDA_CLASSIFY_BATCH) if self.device.type == "cuda" else model.max_batch
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
            for offset in range(0, int(letterboxed.shape[0]), step):
                batch = normalise_crops(letterboxed[offset : offset + step], model.spec)
                logits.append(model.logits_of(batch).float())
        return torch.softmax(torch.cat(logits) / model.temperature, dim=1).cpu()
