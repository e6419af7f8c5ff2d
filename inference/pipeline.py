"""The process-wide pipelines: :func:`get_pipeline` picks and caches one per model x detector x device.

:class:`Pipeline` (decode -> detect -> crop -> classify with PIL and the CPU runtimes) lives in
:mod:`inference.pipeline_base`, :class:`TensorPipeline` (every stage on the GPU) in
:mod:`inference.tensor_pipeline`; both are importable from here.
"""

from __future__ import annotations

import collections
import os
import threading
from pathlib import Path

from inference.bundle import load_bundle
from inference.detect import detector_runtime as resolve_detector_runtime
from inference.detect import get_detector
from inference.pipeline_base import Pipeline
from inference.runtime import resolve_device
from inference.tensor_pipeline import TensorPipeline

__all__ = ["PIPELINE_CACHE_SIZE", "Pipeline", "TensorPipeline", "get_pipeline"]


#: Pipelines kept per process (one per model version x detector); oldest dropped first.
PIPELINE_CACHE_SIZE = 4
_pipelines: collections.OrderedDict[tuple[str, ...], Pipeline] = collections.OrderedDict()
_pipelines_lock = threading.Lock()


def get_pipeline(
    bundle_path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    detector: str = "retinaface",
    detector_weights: str | os.PathLike[str] | None = None,
    device: str | None = None,
    detector_runtime: str | None = None,
) -> Pipeline:
    """The process-wide pipeline for this bundle + detector (model loaded once per worker).

    The bundle's hash is re-checked on every call (cheaply: by file stat), so a file
    replaced on disk is reloaded and a wrong ``expected_sha256`` always refuses. On CUDA with
    RetinaFace on PyTorch (the default there) it is a :class:`~inference.tensor_pipeline.TensorPipeline`:
    decode, detect, crop and classify on the GPU.
    """
    target = resolve_device(device)
    model = load_bundle(bundle_path, expected_sha256=expected_sha256, device=target)
    weights_key = str(Path(detector_weights).expanduser().resolve()) if detector_weights else ""
    runtime = resolve_detector_runtime(detector_runtime, str(target)) if detector == "retinaface" else ""
    key = (str(model.path), model.sha256, detector, weights_key, str(target), model.runtime, runtime)
    with _pipelines_lock:
        pipeline = _pipelines.get(key)
        if pipeline is None:
            face_detector = get_detector(
                detector, weights=detector_weights, device=str(target), runtime=runtime or None
            )
            # A per-neonate baseline model keeps embeddings per frame: the PIL path does that.
            if target.type == "cuda" and hasattr(face_detector, "detect_tensors") and not model.metadata.get("baseline"):
                pipeline = TensorPipeline(model, face_detector)
            else:
                pipeline = Pipeline(model, face_detector)
            _pipelines[key] = pipeline
            while len(_pipelines) > PIPELINE_CACHE_SIZE:
                _pipelines.popitem(last=False)
        else:
            _pipelines.move_to_end(key)
        return pipeline
