"""One PainNet fit: class-weighted loss, Adam(W) with per-group rates and a schedule, early
stopping on validation subjects; and p(pain), with flip test-time averaging when the recipe has it.

Early stopping watches a validation split of the *training* subjects (the paper early-stops
on the test subject), so a held-out subject never influences training. The loss is
class-weighted cross-entropy with weights ``n / (2 n_class)`` from the training split
(COPE is 7:3 nonpain:pain), with the recipe's label smoothing (nurses disagree: some labels
are wrong).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from inference.painnet import CLASSES, PAIN_INDEX, PainNet
from inference.preprocess import batch_tensor
from inference.runtime import configure_threads, resolve_device
from inference.thresholds import roc_auc
from inference.training.config import TrainConfig, class_weights, seed_everything
from inference.training.crops import CropSet
from inference.training.finetune import (
    FeatureBank,
    augmentation_transform,
    backbone_split,
    forward_in_batches,
    freeze_batchnorm_stats,
)


@dataclass
class TrainResult:
    """A trained model and what its validation subjects said about it."""

    model: PainNet
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]
    val_p_pain: np.ndarray
    val_labels: np.ndarray
    val_subjects: list[str]
    train_subjects: list[str]
    seconds: float


def train_painnet(
    *,
    crops: CropSet,
    train_indices: Sequence[int],
    val_indices: Sequence[int],
    config: TrainConfig,
    bank: FeatureBank | None = None,
    progress: bool = True,
    fold_seed: int = 0,
) -> TrainResult:
    """Train one PainNet on ``train_indices`` and early-stop on ``val_indices`` (validation loss).

    The best epoch's weights (lowest validation loss) are restored. With no validation
    images, training runs all epochs and keeps the last.
    """
    start_time = time.perf_counter()
    configure_threads()
    device = resolve_device(config.device)
    seed = config.seed * 1000 + fold_seed
    seed_everything(seed)
    if config.finetune == "all":
        model = PainNet(config.backbone, pretrained=True, weights_path=config.backbone_weights)
    else:
        if bank is None:
            bank = FeatureBank(crops.crops, config=config, progress=progress)
        model = bank.new_model()
        # Re-initialise the head from this fold's seed, so folds are independent draws.
        seed_everything(seed)
        for layer in model.head:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    model = model.to(device)
    prefix, suffix = backbone_split(model, config.finetune)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in suffix.parameters():
        parameter.requires_grad_(True)
    labels = crops.labels
    train_idx = np.asarray(train_indices, dtype=np.int64)
    val_idx = np.asarray(val_indices, dtype=np.int64)
    y_train = torch.from_numpy(labels[train_idx])
    y_val = torch.from_numpy(labels[val_idx])
    weights = class_weights(labels[train_idx]).to(device)
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    val_loss_fn = nn.CrossEntropyLoss(weight=weights)
    groups = model.param_groups(lr=config.lr, backbone_lr=config.backbone_lr, weight_decay=config.weight_decay)
    optimizer_class = torch.optim.AdamW if config.weight_decay else torch.optim.Adam
    optimizer = optimizer_class(
        [{k: v for k, v in g.items() if k != "name"} for g in groups if g["params"]], foreach=True
    )
    steps_per_epoch = max(1, sum(1 for s in range(0, train_idx.size, config.batch_size) if train_idx.size - s >= 2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(config, steps_per_epoch=steps_per_epoch))
    generator = torch.Generator().manual_seed(seed)
    spec = model.preprocessing_spec
    augment = augmentation_transform(config, spec)

    def train_inputs(batch_idx: np.ndarray) -> torch.Tensor:
        if config.finetune == "all":
            return torch.stack([augment(crops.crops[i]) for i in batch_idx]).to(device)
        assert bank is not None
        views = torch.randint(0, bank.n_views, (len(batch_idx),), generator=generator)
        return bank.features[views, torch.from_numpy(batch_idx)].to(device)

    def eval_logits(indices: np.ndarray) -> torch.Tensor:
        suffix.eval()
        return _logits(model, [crops.crops[i] for i in indices], config=config, bank=bank, indices=indices)

    def snapshot() -> dict[str, torch.Tensor]:
        # Only the trained part changes: copying the frozen backbone every epoch would dominate.
        return {k: v.detach().clone() for k, v in suffix.state_dict().items()}

    # What early stopping maximises: (AUC, -loss) or (-loss,), compared as tuples.
    best_score: tuple[float, ...] | None = None
    best_state = snapshot()
    best_epoch = 0
    history: list[dict[str, float]] = []
    stale = 0
    epochs_run = 0
    bar = tqdm(
        range(1, config.epochs + 1),
        desc=f"train {config.backbone}",
        unit="epoch",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )
    for epoch in bar:
        epochs_run = epoch
        suffix.train()
        if config.finetune != "head":
            freeze_batchnorm_stats(suffix.tail)
        order = torch.randperm(train_idx.size, generator=generator).numpy()
        running, seen = 0.0, 0
        for start in range(0, order.size, config.batch_size):
            batch_positions = order[start : start + config.batch_size]
            if batch_positions.size < 2:
                continue  # batch norm in the head needs two samples
            batch_idx = train_idx[batch_positions]
            inputs = train_inputs(batch_idx)
            loss = loss_fn(suffix(inputs), y_train[batch_positions].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item() * batch_positions.size
            seen += batch_positions.size
        record = {"epoch": epoch, "train_loss": running / max(seen, 1)}
        if val_idx.size:
            logits = eval_logits(val_idx)
            val_loss = float(val_loss_fn(logits, y_val))
            record["val_loss"] = val_loss
            score = (-val_loss,)
            if config.stop_on == "auc":
                auc = roc_auc(p_pain=torch.softmax(logits, dim=1)[:, PAIN_INDEX].numpy(), labels=y_val.numpy())
                if auc is not None:
                    record["val_auc"] = auc
                    score = (auc, -val_loss)
            if best_score is None or score > best_score:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = snapshot()
            else:
                stale += 1
        else:
            best_epoch = epoch
            best_state = snapshot()
        history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        if val_idx.size and stale >= config.patience:
            break
    bar.close()
    suffix.load_state_dict(best_state)
    model.eval()
    val_logits = eval_logits(val_idx)
    val_p = torch.softmax(val_logits, dim=1)[:, PAIN_INDEX].numpy() if val_idx.size else np.zeros(0)
    subjects = crops.subjects
    return TrainResult(
        model=model.cpu(),
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        history=history,
        val_p_pain=val_p.astype(np.float64),
        val_labels=labels[val_idx],
        val_subjects=sorted({subjects[i] for i in val_idx}),
        train_subjects=sorted({subjects[i] for i in train_idx}),
        seconds=time.perf_counter() - start_time,
    )


def _logits(
    model: PainNet,
    crops: Sequence[Image.Image],
    *,
    config: TrainConfig | None,
    bank: FeatureBank | None,
    indices: Sequence[int] | np.ndarray | None,
) -> torch.Tensor:
    """Logits of ``crops``, through the bank's view 0 when it holds them; with the config's
    ``flip_tta`` the mean of the crop's and its mirror image's logits (what serving does)."""
    flip = bool(config and config.flip_tta)
    with torch.inference_mode():
        if bank is not None and config is not None and config.finetune != "all" and indices is not None:
            _, suffix = backbone_split(model, config.finetune)
            rows = torch.as_tensor(np.asarray(indices), dtype=torch.long)
            device = next(suffix.parameters()).device
            logits = forward_in_batches(suffix, bank.features[0, rows].to(device)).cpu()
            if flip:
                if bank.flipped is None:
                    raise ValueError("flip_tta needs a feature bank built with flip_tta")
                logits = (logits + forward_in_batches(suffix, bank.flipped[rows].to(device)).cpu()) / 2
            return logits
        if not crops:
            return torch.zeros((0, len(CLASSES)))
        device = next(model.parameters()).device
        inputs = batch_tensor(list(crops), model.preprocessing_spec).to(device)
        logits = forward_in_batches(model, inputs, 32).cpu()
        if flip:
            logits = (logits + forward_in_batches(model, inputs.flip(-1), 32).cpu()) / 2
        return logits


def predict_p_pain(
    model: PainNet,
    crops: Sequence[Image.Image],
    *,
    config: TrainConfig | None = None,
    bank: FeatureBank | None = None,
    indices: Sequence[int] | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """p(pain) for crops, through the bank's view 0 when given (same numbers as the full model),
    averaged with the mirror image when the config has ``flip_tta``."""
    model.eval()
    logits = _logits(model, crops, config=config, bank=bank, indices=indices)
    return torch.softmax(logits / temperature, dim=1)[:, PAIN_INDEX].numpy().astype(np.float64)


def lr_schedule(config: TrainConfig, *, steps_per_epoch: int):
    """Multiplier of the base rates per optimizer step: linear warm-up over ``warmup_epochs``,
    then a half cosine to 0 at ``epochs`` (``cosine``), or 1 throughout (``constant``)."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = max(config.epochs * steps_per_epoch, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    return factor
