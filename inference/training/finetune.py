"""Which part of PainNet trains, and the frozen part's outputs computed once (the feature bank).

``finetune="last"`` trains the backbone's last block plus the head; ``"head"`` the head only;
``"all"`` everything. For ``last``/``head`` the frozen prefix's outputs for every image (the
un-augmented view and seeded augmented views) are computed once and shared by every LOSOCV
fold, which is what makes CPU training practical.
"""

from __future__ import annotations

import copy
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from inference.painnet import CLASSES, PainNet
from inference.preprocess import batch_tensor, bedside_transform, train_transform
from inference.runtime import configure_threads, resolve_device
from inference.training.config import FINETUNE_MODES, TrainConfig, seed_everything

#: Blocks of ``backbone.features`` fine-tuned in ``"last"`` mode: MobileNetV2's last
#: inverted residual + its final 1x1 conv; ResNet50's layer4.
_LAST_BLOCKS = {"mobilenet_v2": 2, "resnet50": 1}


def _suffix(tail: nn.Module, head: nn.Module) -> nn.Sequential:
    """The trainable tail of a backbone followed by the head (``features -> logits``), as ``.tail``/``.head``."""
    return nn.Sequential(OrderedDict(tail=tail, head=head))


def backbone_split(model: PainNet, finetune: str) -> tuple[nn.Module, nn.Module]:
    """``(frozen_prefix, trainable_suffix)`` with ``suffix(prefix(x)) == model(x)``.

    The suffix shares parameters with ``model``: training it trains the model in place.
    """
    if finetune not in FINETUNE_MODES:
        raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {finetune!r}")
    backbone = model.backbone
    if finetune == "all":
        return nn.Identity(), _suffix(backbone, model.head)
    if finetune == "head":
        return backbone, _suffix(nn.Identity(), model.head)
    if model.backbone_name == "fer_cnn":
        prefix = nn.Sequential(backbone.conv_1, backbone.conv_2, backbone.conv_3)
        return prefix, _suffix(nn.Sequential(backbone.conv_4, nn.Flatten(1), backbone.embed), model.head)
    blocks = list(backbone.features.children())
    n_last = _LAST_BLOCKS.get(model.backbone_name, 1)
    prefix = nn.Sequential(*blocks[:-n_last])
    return prefix, _suffix(nn.Sequential(*blocks[-n_last:], backbone.pool, nn.Flatten(1)), model.head)


def freeze_batchnorm_stats(module: nn.Module) -> None:
    """Backbone batch-norm layers keep their pretrained statistics (small batches, few images)."""
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.eval()


def augmentation_transform(config: TrainConfig, spec: dict) -> Any:
    """The recipe's training transform: the bedside one or the paper's rotation + flip."""
    return bedside_transform(spec) if config.augment == "bedside" else train_transform(spec)


class FeatureBank:
    """Frozen-prefix outputs for every image: view 0 un-augmented, views 1..K augmented, and
    (with ``flip_tta``) the mirror image of view 0 in :attr:`flipped`.

    Built once per (backbone, finetune, views, augmentation, seed) and shared by every LOSOCV
    fold, which is what makes CPU training practical. Augmented views are drawn with the
    recipe's transform (:func:`augmentation_transform`) from a seeded generator.
    """

    def __init__(self, crops: Sequence[Image.Image], *, config: TrainConfig, progress: bool = True) -> None:
        configure_threads()
        self.config = config
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        model = PainNet(config.backbone, pretrained=True, weights_path=config.backbone_weights)
        self.pretrained_state = copy.deepcopy(model.state_dict())
        self.spec = model.preprocessing_spec
        prefix, _ = backbone_split(model, config.finetune)
        prefix = prefix.to(self.device).eval()
        n_views = 1 + max(0, config.augment_views)
        augment = augmentation_transform(config, self.spec)
        views: list[torch.Tensor] = []
        flipped: list[torch.Tensor] = []
        total = len(crops) * (n_views + int(config.flip_tta))
        bar = tqdm(
            total=total,
            desc=f"{config.backbone} features",
            unit="img",
            disable=not progress,
            file=sys.stderr,
            leave=False,
        )
        with torch.inference_mode():
            for view in range(n_views):
                outputs = []
                for start in range(0, len(crops), 32):
                    chunk = crops[start : start + 32]
                    if view == 0:
                        batch = batch_tensor(chunk, self.spec)
                    else:
                        batch = torch.stack([augment(crop) for crop in chunk])
                    outputs.append(prefix(batch.to(self.device)).float().cpu())
                    bar.update(len(chunk))
                views.append(torch.cat(outputs))
            if config.flip_tta:
                for start in range(0, len(crops), 32):
                    chunk = crops[start : start + 32]
                    flipped.append(prefix(batch_tensor(chunk, self.spec).flip(-1).to(self.device)).float().cpu())
                    bar.update(len(chunk))
        bar.close()
        #: shape (n_views, n_images, *feature_shape)
        self.features = torch.stack(views)
        #: the mirrored view 0, shape (n_images, *feature_shape); None without flip_tta
        self.flipped = torch.cat(flipped) if flipped else None

    @property
    def n_views(self) -> int:
        return int(self.features.shape[0])

    def new_model(self) -> PainNet:
        """A fresh PainNet with the pretrained backbone (no disk read) and a seeded new head."""
        model = PainNet(self.config.backbone, pretrained=False)
        model.load_state_dict(self.pretrained_state)
        return model


def bank_centred(bank: FeatureBank, subjects: Sequence[str], *, reference_subjects: Sequence[str]):
    """A copy of a head-only ``bank`` whose embeddings are centred on each subject's baseline.

    The baseline is the median embedding of the subject's own un-augmented frames (labels never
    used; :mod:`inference.baseline`); a subject with fewer than the config's ``baseline_min_frames``
    is centred on the reference, the median of ``reference_subjects``' baselines (the training
    subjects), as serving does at cold start. Returns ``(bank, baselines, reference)``.
    """
    import numpy as np

    from inference.baseline import centres_for, population_reference, subject_baselines

    if bank.config.finetune != "head":
        raise ValueError("a per-neonate baseline centres embeddings: it needs finetune 'head'")
    policy = bank.config.baseline_policy()
    view0 = bank.features[0].numpy()
    baselines = subject_baselines(view0, subjects, policy)
    wanted = set(reference_subjects)
    reference_rows = np.asarray([s in wanted for s in subjects])
    reference = population_reference([baselines[s] for s in sorted(wanted)], view0[reference_rows])
    centres = torch.from_numpy(centres_for(subjects, baselines, reference))
    centred = copy.copy(bank)
    centred.features = bank.features - centres.unsqueeze(0)
    centred.flipped = bank.flipped - centres if bank.flipped is not None else None
    return centred, baselines, reference


def forward_in_batches(module: nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    outputs = [module(inputs[start : start + batch_size]) for start in range(0, inputs.shape[0], batch_size)]
    return torch.cat(outputs) if outputs else torch.zeros((0, len(CLASSES)))
