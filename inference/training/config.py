"""Training hyper-parameters, seeding and the seeded validation split of subjects."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from inference.baseline import BASELINE_MIN_FRAMES, BASELINE_MODES, BASELINE_WINDOW, BaselinePolicy
from inference.painnet import BACKBONES

#: How much of PainNet trains (see :mod:`inference.training`): the backbone's last block plus
#: the head, the head alone, or everything.
FINETUNE_MODES = ("last", "head", "all")


#: The training recipes. ``default`` is the one that learns a subtle facial signal from a few
#: hundred frames on 2 CPU cores (docs/learning.md has the measurements); ``paper`` is Zhao et
#: al.'s protocol (one rate of 1e-5 for everything, rotation + flip, early stopping on the
#: validation loss), kept so its figures can be reproduced.
RECIPES: dict[str, dict[str, Any]] = {
    "default": {
        "lr": 1e-3,
        "backbone_lr": 1e-4,
        "weight_decay": 1e-4,
        "epochs": 30,
        "patience": 8,
        "warmup_epochs": 2,
        "schedule": "cosine",
        "label_smoothing": 0.1,
        "augment": "bedside",
        "augment_views": 6,
        "stop_on": "auc",
        "min_val_subjects": 2,
        "flip_tta": True,
    },
    "paper": {
        "lr": 1e-5,
        "backbone_lr": None,
        "weight_decay": 0.0,
        "epochs": 60,
        "patience": 10,
        "warmup_epochs": 0,
        "schedule": "constant",
        "label_smoothing": 0.0,
        "augment": "paper",
        "augment_views": 4,
        "stop_on": "val_loss",
        "min_val_subjects": 1,
        "flip_tta": False,
    },
}
SCHEDULES = ("cosine", "constant")
AUGMENTATIONS = ("bedside", "paper")
STOP_METRICS = ("auc", "val_loss")


@dataclass
class TrainConfig:
    """Training hyper-parameters. The defaults are the ``default`` recipe; :meth:`for_recipe`
    builds another recipe's config with overrides.

    ``lr`` is the head's rate and ``backbone_lr`` the trainable backbone layers' (None: ``lr``);
    the schedule warms up linearly for ``warmup_epochs`` and then decays by a half cosine to 0
    at ``epochs``. ``stop_on`` is what early stopping watches on the validation subjects:
    ``auc`` (ties broken by the lower loss) or ``val_loss``. ``flip_tta`` averages the logits of
    each crop and its mirror image, in evaluation and (through the bundle) in serving.
    """

    backbone: str = "mobilenet_v2"
    backbone_weights: str | None = None
    finetune: str = "last"
    recipe: str = "default"
    epochs: int = RECIPES["default"]["epochs"]
    lr: float = RECIPES["default"]["lr"]
    backbone_lr: float | None = RECIPES["default"]["backbone_lr"]
    batch_size: int = 16
    patience: int = RECIPES["default"]["patience"]
    val_subjects: int | None = None
    min_val_subjects: int = RECIPES["default"]["min_val_subjects"]
    augment_views: int = RECIPES["default"]["augment_views"]
    augment: str = RECIPES["default"]["augment"]
    weight_decay: float = RECIPES["default"]["weight_decay"]
    warmup_epochs: int = RECIPES["default"]["warmup_epochs"]
    schedule: str = RECIPES["default"]["schedule"]
    label_smoothing: float = RECIPES["default"]["label_smoothing"]
    stop_on: str = RECIPES["default"]["stop_on"]
    flip_tta: bool = RECIPES["default"]["flip_tta"]
    seed: int = 0
    device: str | None = None
    calibrate: bool = True
    #: ``neonate``: the head judges each embedding relative to its subject's baseline (the median
    #: of that subject's own frames, no labels; :mod:`inference.baseline`). Needs ``finetune="head"``.
    baseline: str = "none"
    baseline_min_frames: int = BASELINE_MIN_FRAMES
    baseline_window: int = BASELINE_WINDOW

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {self.recipe!r}")
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError("epochs >= 1, batch_size >= 2 and lr > 0 are required")
        if self.backbone_lr is not None and self.backbone_lr <= 0:
            raise ValueError("backbone_lr must be > 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}")
        if self.stop_on not in STOP_METRICS:
            raise ValueError(f"stop_on must be one of {STOP_METRICS}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError("label_smoothing must be in [0, 0.5)")
        if self.baseline not in BASELINE_MODES:
            raise ValueError(f"baseline must be one of {BASELINE_MODES}, got {self.baseline!r}")
        if self.baseline == "neonate" and self.finetune != "head":
            raise ValueError("baseline 'neonate' centres the backbone's embeddings: use finetune 'head'")
        self.baseline_policy()
        if self.warmup_epochs < 0 or self.patience < 1:
            raise ValueError("warmup_epochs >= 0 and patience >= 1 are required")

    @classmethod
    def for_recipe(cls, recipe: str = "default", **overrides: Any) -> TrainConfig:
        """The config of ``recipe`` with ``overrides`` (a None override keeps the recipe's value)."""
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")
        values = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(recipe=recipe, **values)

    def baseline_policy(self) -> BaselinePolicy:
        return BaselinePolicy(min_frames=self.baseline_min_frames, window=self.baseline_window)

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


def validation_split(
    subjects: Sequence[str], k: int | None, seed: int, minimum: int = 1
) -> tuple[list[str], list[str]]:
    """``(train_subjects, val_subjects)``: ``k`` subjects (default ~20%, at least ``minimum``)
    held out, seeded; at least one subject always stays for training."""
    unique = sorted(set(subjects))
    if len(unique) < 2:
        return unique, []
    if k is None:
        k = max(minimum, round(len(unique) / 5))
    k = min(max(1, k), len(unique) - 1)
    rng = random.Random(f"val-split:{seed}")
    val = sorted(rng.sample(unique, k))
    return [s for s in unique if s not in val], val


def subject_indices(subjects: Sequence[str], chosen: Sequence[str]) -> list[int]:
    """Positions in ``subjects`` whose subject is one of ``chosen`` (a subject's images stay together)."""
    wanted = set(chosen)
    return [i for i, s in enumerate(subjects) if s in wanted]
