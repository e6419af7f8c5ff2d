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


def gradcam_map(loaded_model: LoadedModel, crop: Image.Image, *, class_name: str = "pain") -> np.ndarray:
    """Grad-CAM map ``(size, size)`` in [0, 1] for ``class_name``'s logit on ``crop``.

    Runs with gradients enabled on the shared eval-mode module without changing its
    parameters (only the input requires grad), so it is safe on a cached model.
    """
    module = loaded_model.module
    layer = _target_layer(module)
    size = int(loaded_model.spec["size"])
    class_index = loaded_model.classes.index(class_name)
    captured: dict[str, torch.Tensor] = {}

    def keep_activation(_layer: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        # Grad-CAM needs d(logit)/d(activation) only: the activation becomes the graph's leaf,
        # so autograd records and back-propagates through the layers after it, not through
        # the whole backbone (same map; half the cost for MobileNetV2 on CPU).
        leaf = output.detach().requires_grad_(True)
        captured["activation"] = leaf
        return leaf

    handle = layer.register_forward_hook(keep_activation)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            batch = loaded_model.to_tensor([crop])
            logits = module(batch)
            logits[0, class_index].backward()
    finally:
        handle.remove()
    if "activation" not in captured or captured["activation"].grad is None:
        raise RuntimeError("Grad-CAM target layer received no gradient")
    activation = captured["activation"].detach()[0]
    gradient = captured["activation"].grad.detach()[0]
    weights = gradient.mean(dim=(1, 2), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=0)).float().cpu().numpy()
    cam = cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
    peak = float(cam.max())
    return cam / peak if peak > 0 else np.zeros_like(cam)


def gradcam(loaded_model: LoadedModel, crop: Image.Image, *, class_name: str = "pain") -> Image.Image:
    """RGB overlay (crop size, 224x224) of the Grad-CAM map on the letterboxed crop."""
    size = int(loaded_model.spec["size"])
    face = letterbox(crop, size, loaded_model.spec["fill"])
    cam = gradcam_map(loaded_model, face, class_name=class_name)
    heat_bgr = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat_bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
    base = np.asarray(face, dtype=np.float32)
    blended = (1 - OVERLAY_ALPHA) * base + OVERLAY_ALPHA * heat
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), mode="RGB")
