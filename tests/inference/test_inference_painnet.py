"""PainNet: the paper's head, each backbone, pretrained weights really loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from skimage import data as skdata
from torch import nn

from inference.fer import FER_CLASSES, FerProxy
from inference.painnet import BACKBONES, CLASSES, PainNet, _mobilenet_v2_weights_path, default_spec
from inference.preprocess import eval_transform


def test_class_order() -> None:
    assert CLASSES == ("nonpain", "pain")
    assert PainNet.classes == CLASSES


@pytest.mark.parametrize("backbone,features", [("mobilenet_v2", 1280), ("fer_cnn", 256), ("resnet50", 2048)])
def test_head_has_the_papers_exact_layers(backbone: str, features: int) -> None:
    net = PainNet(backbone, pretrained=False)
    layers = list(net.head)
    assert [type(layer) for layer in layers] == [
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.BatchNorm1d,
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.BatchNorm1d,
        nn.Linear,
    ]
    assert (layers[0].in_features, layers[0].out_features) == (features, 512)
    assert layers[2].p == 0.5 and layers[6].p == 0.5
    assert layers[3].num_features == 512
    assert (layers[4].in_features, layers[4].out_features) == (512, 128)
    assert layers[7].num_features == 128
    assert (layers[8].in_features, layers[8].out_features) == (128, 2)
    assert net.feature_dim == features


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "fer_cnn", "resnet50"])
def test_forward_gives_two_logits_for_each_backbones_input_spec(backbone: str, astronaut: Image.Image) -> None:
    net = PainNet(backbone, pretrained=False).eval()
    spec = default_spec(backbone)
    batch = torch.stack([eval_transform(spec)(astronaut)] * 2)
    with torch.inference_mode():
        logits = net(batch)
    assert logits.shape == (2, 2)
    assert torch.isfinite(logits).all()
    if backbone != "resnet50":  # ~5 s on 2 CPU cores for no extra coverage
        net.train()
        assert net(batch).shape == (2, 2)  # BatchNorm1d trains on batches > 1


def test_mobilenet_v2_loads_the_shipped_imagenet_weights() -> None:
    path = _mobilenet_v2_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = PainNet("mobilenet_v2", pretrained=True)
    ours = net.backbone.features.state_dict()
    assert torch.equal(ours["0.0.weight"], state["features.0.0.weight"])
    assert torch.equal(ours["18.1.running_var"], state["features.18.1.running_var"])
    # And the file is real ImageNet weights: scikit-image's cat is classified as a cat.
    full = torchvision.models.mobilenet_v2()
    full.load_state_dict(state)
    full.eval()
    cat = eval_transform(default_spec("mobilenet_v2"))(Image.fromarray(skdata.chelsea()))
    with torch.inference_mode():
        top = int(full(cat[None]).argmax())
    assert 281 <= top <= 285, f"ImageNet class {top} is not a domestic cat"


def test_fer_cnn_loads_pyemotion_weights(astronaut: Image.Image) -> None:
    net = PainNet("fer_cnn", pretrained=True)
    proxy = FerProxy(pretrained=True)
    assert torch.equal(net.backbone.conv_1[1].weight, proxy.network.conv_1[1].weight)
    assert torch.equal(net.backbone.embed[0].weight, proxy.network.linear[0].weight)
    # The FER network recognises the astronaut's smile.
    face = astronaut.crop((177, 56, 272, 176)).convert("L").resize((48, 48))
    x = (torch.from_numpy(__import__("numpy").asarray(face, dtype="float32")) / 255 - 0.5) / 0.5
    with torch.inference_mode():
        shares = proxy.eval().expression_scores(x[None, None])[0]
    assert FER_CLASSES[int(shares.argmax())] == "happiness"


def test_resnet50_needs_operator_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NEOPAIN_RESNET50_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="NEOPAIN_RESNET50_WEIGHTS"):
        PainNet("resnet50")
    with pytest.raises(FileNotFoundError, match="not found"):
        PainNet("resnet50", weights_path=tmp_path / "missing.pth")


def test_resnet50_loads_an_operator_file_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch.manual_seed(5)
    source = torchvision.models.resnet50()
    path = tmp_path / "resnet50-fer.pth"
    # Wrapped and DataParallel-prefixed, as checkpoints in the wild often are.
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    monkeypatch.setenv("NEOPAIN_RESNET50_WEIGHTS", str(path))
    net = PainNet("resnet50")
    assert torch.equal(net.backbone.features[0].weight, source.conv1.weight)
    assert torch.equal(net.backbone.features[7][2].conv3.weight, source.layer4[2].conv3.weight)


def test_resnet50_rejects_a_file_of_the_wrong_architecture(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a torchvision ResNet50"):
        PainNet("resnet50", weights_path=_mobilenet_v2_weights_path())


def test_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        PainNet("vgg16")


def test_param_groups_and_freezing() -> None:
    net = PainNet("fer_cnn", pretrained=False)
    groups = net.param_groups(lr=1e-4, backbone_lr=1e-5)
    assert [g["name"] for g in groups] == ["head", "backbone"]
    assert [g["lr"] for g in groups] == [1e-4, 1e-5]
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in net.parameters())
    net.freeze_backbone()
    assert [g["name"] for g in net.param_groups()] == ["head"]
    torch.optim.Adam(net.param_groups(lr=1e-5))  # usable as-is by an optimizer


def test_registry_documents_specs() -> None:
    assert set(BACKBONES) >= {"mobilenet_v2", "fer_cnn", "resnet50"}
    assert default_spec("fer_cnn")["input_size"] == 48 and default_spec("fer_cnn")["grayscale"]
    assert default_spec("mobilenet_v2")["input_size"] == 224
    spec = default_spec("mobilenet_v2")
    spec["mean"][0] = 99.0  # copies: callers cannot corrupt the registry
    assert default_spec("mobilenet_v2")["mean"][0] == 0.485
