"""Grad-CAM heat maps: which part of the face drove the pain score.

Shown to nurses next to the crop so they can see whether the model looked at the brow,
eyes and mouth (NIPS cues) or at a blanket. Works for PainNet (any backbone) and the
FER-proxy bootstrap model: both expose ``last_conv_layer()``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from inference.bundle import LoadedModel
from inference.preprocess import letterbox

#: Share of the heat map in the overlay; the rest is the face crop.
OVERLAY_ALPHA = 0.45


def _target_layer(module: nn.Module) -> nn.Module:
    finder = getattr(module, "last_conv_layer", None)
    if finder is None:
        raise TypeError(f"{type(module).__name__} does not expose last_conv_layer() for Grad-CAM")
    return finder()


def gradcam_batch(
    loaded_model: LoadedModel, batch: torch.Tensor, *, class_name: str = "pain"
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Logits of ``batch`` and a Grad-CAM map per row, from one forward pass.

    ``batch`` is a prepared input (:meth:`LoadedModel.to_tensor`). Maps are ``(size, size)``
    in [0, 1] for ``class_name``'s logit. The target layer's activation is made the graph's
    leaf, so autograd records and back-propagates through the layers after it only, not the
    whole backbone; the module's parameters are untouched, so it is safe on a cached model.
    In eval mode every row's logit depends on its own activation only, so one backward pass
    of the summed logits gives each row its own gradient: the serving forward pass doubles as
    the Grad-CAM forward pass (the worker's saliency maps cost a head-sized backward pass).
    """
    logits, maps = _gradcam_pass(loaded_model, batch, class_name=class_name)
    if loaded_model.flip_tta:
        # The served probability averages the mirror image's logits (as the evaluation did);
        # the map stays the unmirrored crop's, the one a nurse sees.
        with torch.inference_mode():
            mirrored = loaded_model.logits_of(batch.flip(-1), mirror_average=False)
        logits = (logits + mirrored.to(logits.device)) / 2
    return logits, maps


def _gradcam_pass(
    loaded_model: LoadedModel, batch: torch.Tensor, *, class_name: str
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Logits and Grad-CAM maps of ``batch`` itself (no test-time averaging)."""
    module = loaded_model.module
    size = int(loaded_model.spec["size"])
    class_index = loaded_model.classes.index(class_name)
    trunk_activation = loaded_model.trunk_activation(batch)
    if trunk_activation is not None:
        # The trunk ran on ONNX Runtime and ends at the target layer: its output is the leaf.
        leaf = trunk_activation.detach().requires_grad_(True)
        with torch.inference_mode(False), torch.enable_grad():
            logits = module.forward_from_trunk(leaf)
            logits[:, class_index].sum().backward()
        return logits.detach(), _maps(leaf, size)
    layer = _target_layer(module)
    captured: dict[str, torch.Tensor] = {}

    def keep_activation(_layer: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        leaf = output.detach().requires_grad_(True)
        captured["activation"] = leaf
        return leaf

    handle = layer.register_forward_hook(keep_activation)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            logits = module(batch.clone() if batch.is_inference() else batch)
            logits[:, class_index].sum().backward()
    finally:
        handle.remove()
    if "activation" not in captured:
        raise RuntimeError("Grad-CAM target layer received no gradient")
    return logits.detach(), _maps(captured["activation"], size)


def _maps(leaf: torch.Tensor, size: int) -> list[np.ndarray]:
    """Grad-CAM maps ``(size, size)`` in [0, 1] from the target activation (a leaf after backward)."""
    if leaf.grad is None:
        raise RuntimeError("Grad-CAM target layer received no gradient")
    activation = leaf.detach()
    weights = leaf.grad.detach().mean(dim=(2, 3), keepdim=True)
    cams = torch.relu((weights * activation).sum(dim=1)).float().cpu().numpy()
    maps = []
    for cam in cams:
        cam = cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
        peak = float(cam.max())
        maps.append(cam / peak if peak > 0 else np.zeros_like(cam))
    return maps


def gradcam_map(loaded_model: LoadedModel, crop: Image.Image, *, class_name: str = "pain") -> np.ndarray:
    """Grad-CAM map ``(size, size)`` in [0, 1] for ``class_name``'s logit on ``crop``."""
    with torch.inference_mode(False):
        batch = loaded_model.to_tensor([crop])
    return gradcam_batch(loaded_model, batch, class_name=class_name)[1][0]


def overlay(loaded_model: LoadedModel, crop: Image.Image, cam: np.ndarray) -> Image.Image:
    """RGB overlay (224x224) of a Grad-CAM map on the letterboxed crop."""
    size = int(loaded_model.spec["size"])
    face = letterbox(crop, size, loaded_model.spec["fill"])
    heat_bgr = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat_bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
    base = np.asarray(face, dtype=np.float32)
    blended = (1 - OVERLAY_ALPHA) * base + OVERLAY_ALPHA * heat
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), mode="RGB")


def gradcam(loaded_model: LoadedModel, crop: Image.Image, *, class_name: str = "pain") -> Image.Image:
    """RGB overlay (crop size, 224x224) of the Grad-CAM map on the letterboxed crop."""
    size = int(loaded_model.spec["size"])
    face = letterbox(crop, size, loaded_model.spec["fill"])
    return overlay(loaded_model, face, gradcam_map(loaded_model, face, class_name=class_name))
