"""The classifier's convolutional trunk on ONNX Runtime (CPU serving).

On CPU, ONNX Runtime runs MobileNetV2's conv trunk ~2.2x faster than PyTorch eager with
channels_last (4.5 vs 10.3 ms per 224x224 image at batch 8 on 2 cores; scripts/bench_worker.py
compares the two in the same run). Only the trunk moves: it ends at the Grad-CAM target layer
(:meth:`PainNet.last_conv_layer`), so the pooled head stays in PyTorch and the Grad-CAM map is
still computed exactly, by back-propagating the head from the trunk's output (see
:func:`inference.saliency.gradcam_batch`).

``NEOPAIN_CLASSIFIER_RUNTIME`` chooses:

* ``auto`` (default): ONNX Runtime for PainNet's ImageNet trunks (MobileNetV2, ResNet50) on
  CPU, PyTorch otherwise (CUDA, where batched PyTorch is fast; the FER-proxy bootstrap model,
  whose whole forward pass costs ~1 ms);
* ``torch``: always PyTorch;
* ``onnxruntime``: as ``auto``, but a model whose trunk cannot run there fails to load instead
  of falling back (to benchmark or to make sure).

The trunk is exported in memory from the loaded weights when the model loads (~1.2 s for
MobileNetV2; workers preload their models at start-up), and checked against PyTorch on a
probe batch before it serves: a trunk whose output differs by more than
:data:`MAX_ABS_DIFFERENCE` is refused (``auto`` then serves with PyTorch).
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.runtime import ort_session_options

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime")
#: Largest absolute difference allowed between the ONNX and PyTorch trunk outputs on the probe.
MAX_ABS_DIFFERENCE = 1e-3
#: ONNX opset of the exported trunk (onnxruntime >= 1.14 runs it).
OPSET = 17


class TrunkRuntimeError(RuntimeError):
    """The trunk cannot be served by ONNX Runtime (export or check failed)."""


def classifier_runtime() -> str:
    """``NEOPAIN_CLASSIFIER_RUNTIME`` (``auto`` when unset); raises on an unknown value."""
    value = os.environ.get("NEOPAIN_CLASSIFIER_RUNTIME", "").strip().lower() or "auto"
    if value not in RUNTIMES:
        raise ValueError(f"NEOPAIN_CLASSIFIER_RUNTIME must be one of {', '.join(RUNTIMES)}; got {value!r}")
    return value


def splittable_trunk(module: nn.Module) -> nn.Module | None:
    """The module computing ``module``'s Grad-CAM target activation from the input, if it has one.

    PainNet with an ImageNet trunk: ``backbone.features`` ends with the target layer, and the
    rest of the forward pass is :meth:`PainNet.forward_from_trunk`.
    """
    backbone = getattr(module, "backbone", None)
    features = getattr(backbone, "features", None)
    if not isinstance(features, nn.Sequential) or not hasattr(module, "forward_from_trunk"):
        return None
    if features[-1] is not module.last_conv_layer():
        return None
    return features


class OnnxTrunk:
    """An ONNX Runtime session computing a PyTorch trunk: float32 NCHW batch in, activations out."""

    def __init__(self, trunk: nn.Module, *, size: int) -> None:
        import onnxruntime as ort

        self.size = size
        model_bytes = _export(trunk, size=size)
        self._session = ort.InferenceSession(model_bytes, ort_session_options(), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.providers = self._session.get_providers()
        self.max_abs_difference = _check(self, trunk, size=size)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Activations for ``batch`` (any memory format, on CPU), as a float32 tensor."""
        array = np.ascontiguousarray(batch.detach().to(dtype=torch.float32).numpy())
        return torch.from_numpy(self._session.run(None, {self._input: array})[0])


def _export(trunk: nn.Module, *, size: int) -> bytes:
    import warnings

    try:
        import onnx  # noqa: F401 - torch's exporter needs it; a clear error beats its own
    except ImportError as exc:
        raise TrunkRuntimeError("the onnx package is not installed (pip install -r requirements.txt)") from exc
    plain = trunk.to(memory_format=torch.contiguous_format)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                plain,
                torch.zeros(1, 3, size, size),
                buffer,
                input_names=["image"],
                output_names=["activation"],
                dynamic_axes={"image": {0: "batch"}, "activation": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:
        raise TrunkRuntimeError(f"exporting the trunk to ONNX failed: {type(exc).__name__}: {exc}") from exc
    finally:
        trunk.to(memory_format=torch.channels_last)
    return buffer.getvalue()


def _check(runner: OnnxTrunk, trunk: nn.Module, *, size: int) -> float:
    """Compare ONNX Runtime and PyTorch on a fixed probe batch; refuse a trunk that disagrees."""
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(2, 3, size, size, generator=generator)
    with torch.inference_mode():
        expected = trunk(probe.contiguous(memory_format=torch.channels_last)).float()
    actual = runner(probe)
    if actual.shape != expected.shape:
        raise TrunkRuntimeError(f"ONNX trunk output shape {tuple(actual.shape)} != PyTorch {tuple(expected.shape)}")
    difference = float((actual - expected).abs().max())
    if not difference <= MAX_ABS_DIFFERENCE:
        raise TrunkRuntimeError(f"ONNX trunk differs from PyTorch by {difference:.2e} (> {MAX_ABS_DIFFERENCE:g})")
    return difference


def onnx_trunk_for(module: nn.Module, *, device: torch.device, size: int, label: str = "") -> Any:
    """The :class:`OnnxTrunk` serving ``module`` under the configured runtime, or ``None`` (PyTorch)."""
    runtime = classifier_runtime()
    if runtime == "torch":
        return None
    trunk = splittable_trunk(module)
    reason = ""
    if device.type != "cpu":
        reason = f"device is {device}"
    elif trunk is None:
        reason = "its trunk cannot be split at the Grad-CAM layer"
    if reason:
        if runtime == "onnxruntime":
            raise TrunkRuntimeError(
                f"NEOPAIN_CLASSIFIER_RUNTIME=onnxruntime cannot serve {label or 'this model'}: {reason}"
            )
        return None
    try:
        runner = OnnxTrunk(trunk, size=size)
    except Exception as exc:
        if runtime == "onnxruntime":
            raise TrunkRuntimeError(str(exc)) from exc
        logger.warning("serving %s with PyTorch: ONNX Runtime trunk unavailable (%s)", label or "model", exc)
        return None
    logger.info(
        "%s: trunk on ONNX Runtime (max difference to PyTorch %.1e)", label or "model", runner.max_abs_difference
    )
    return runner
