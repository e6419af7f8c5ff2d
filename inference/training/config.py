"""Training hyper-parameters, seeding and the seeded validation split of subjects."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from inference.painnet import BACKBONES

#: How much of PainNet trains (see :mod:`inference.training`): the backbone's last block plus
#: the head, the head alone, or everything.
FINETUNE_MODES = ("last", "head", "all")


@dataclass
class TrainConfig:
    """Training hyper-parameters; defaults follow the paper where it states them."""

    backbone: str = "mobilenet_v2"
    backbone_weights: str | None = None
    finetune: str = "last"
    epochs: int = 60
    lr: float = 1e-5
    batch_size: int = 16
    patience: int = 10
    val_subjects: int | None = None
    augment_views: int = 4
    weight_decay: float = 0.0
    seed: int = 0
    device: str | None = None
    calibrate: bool = True

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}")
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError("epochs >= 1, batch_size >= 2 and lr > 0 are required")

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """``n / (2 n_c)`` per class (1.0 for a missing class): balances the loss for imbalance."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    weights = np.where(counts > 0, labels.size / (2.0 * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def validation_split(subjects: Sequence[str], k: int | None, seed: int) -> tuple[list[str], list[str]]:
    """``(train_subjects, val_subjects)``: ``k`` subjects (default ~20%, at least 1) held out, seeded."""
    unique = sorted(set(subjects))
    if len(unique) < 2:
        return unique, []
    if k is None:
        k = max(1, round(len(unique) / 5))
    k = min(max(1, k), len(unique) - 1)
    rng = random.Random(f"val-split:{seed}")
    val = sorted(rng.sample(unique, k))
    return [s for s in unique if s not in val], val


def subject_indices(subjects: Sequence[str], chosen: Sequence[str]) -> list[int]:
    """Positions in ``subjects`` whose subject is one of ``chosen`` (a subject's images stay together)."""
    wanted = set(chosen)
    return [i for i, s in enumerate(subjects) if s in wanted]
