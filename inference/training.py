"""Training and leave-one-subject-out evaluation of PainNet: pure torch, no Django.

The paper's recipe (Zhao et al. 2024): a pretrained backbone plus the FC512/FC128 head with
dropout 0.5 and batch norm (:mod:`inference.painnet`), Adam at 1e-5, rotation 0-15 degrees
and horizontal flips (:func:`inference.preprocess.train_transform`), early stopping, and
leave-one-subject-out cross-validation (LOSOCV). Additions, each for a stated reason:

* **Early stopping on held-out subjects.** The paper early-stops on the test subject; here
  a validation split of the *training* subjects is held out instead, so the test subject
  never influences training (no optimistic bias).
* **Class imbalance** (COPE is 7:3 nonpain:pain): class-weighted cross-entropy, weights
  ``n / (2 n_class)`` from the training split.
* **Face crops made exactly as served** (same decoder, detector, margin and letterbox as
  :class:`inference.pipeline.Pipeline`) and cached on disk, keyed by the file's sha256 plus
  the detector and preprocessing, so a second run skips detection.
* **Fine-tuning depth** (``finetune``), because 2 CPU cores cannot afford the paper's full
  fine-tune on every fold:

  - ``"last"`` (default): the backbone's last block plus the head are trained; the frozen
    part's outputs are computed once per image for the un-augmented view and
    ``augment_views`` augmented views (rotation + flip, seeded), and shared by every
    LOSOCV fold. Close to the paper's transfer learning at a fraction of the cost.
  - ``"head"``: backbone frozen, head trained on cached embeddings of the same views (the
    fastest; what the tests use).
  - ``"all"``: the paper's full fine-tune with on-the-fly augmentation (use a GPU).

Dataset layouts: ``DIR/<subject_id>/<pain|nonpain>/*.jpg|png`` (COPE/MNPAD-derived sets),
or a CSV manifest with columns ``path, subject, label`` (paths relative to the CSV). A
folder may instead hold ``manifest.csv``. A folder written by ``export_training_set`` has
``dataset.json`` with ``"cropped": true``: its images are already the served face crops, so
no detector is run on them.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from inference import thresholds as th
from inference.decode import UnreadableImage, decode_image
from inference.detect import DEFAULT_MARGIN, get_detector, select_face
from inference.painnet import BACKBONES, CLASSES, PAIN_INDEX, PainNet
from inference.preprocess import batch_tensor, crop_face, letterbox, train_transform
from inference.runtime import configure_threads, data_dir, resolve_device

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: Folder / manifest label spellings accepted (COPE-style names included).
LABEL_NAMES: dict[str, int] = {
    "pain": 1,
    "nonpain": 0,
    "non-pain": 0,
    "non_pain": 0,
    "nopain": 0,
    "no_pain": 0,
    "1": 1,
    "0": 0,
}
DATASET_MARKER = "dataset.json"
MANIFEST_NAME = "manifest.csv"
FINETUNE_MODES = ("last", "head", "all")
#: Bumped when the crop recipe changes, so old cache entries are never reused.
CROP_RECIPE_VERSION = 1
#: Limits on the served temperature. A small validation split is often perfectly separated,
#: where the NLL keeps falling as T -> 0 and would let the model claim certainty it has not
#: earned; sharpening is therefore capped at 2x, softening at 5x.
SERVED_TEMPERATURE_BOUNDS = (0.5, 5.0)
#: Fewer validation images than this (or one class only): serve uncalibrated (T = 1).
MIN_CALIBRATION_IMAGES = 20


# =============================================================================================
# Dataset
# =============================================================================================


@dataclass(frozen=True)
class LabelledImage:
    """One training image: file, subject (neonate) id and label (1 pain, 0 nonpain)."""

    path: Path
    subject: str
    label: int


class DatasetError(ValueError):
    """The dataset folder or manifest cannot be used; the message says why."""


def _label_of(raw: str, where: str) -> int:
    key = raw.strip().lower()
    if key not in LABEL_NAMES:
        raise DatasetError(f"{where}: label {raw!r} is neither pain nor nonpain")
    return LABEL_NAMES[key]


def manifest_read(path: str | os.PathLike[str]) -> list[LabelledImage]:
    """Rows of a CSV manifest with columns ``path, subject, label`` (relative paths: to the CSV)."""
    path = Path(path)
    images = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "subject", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: manifest lacks column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            image_path = Path(row["path"].strip())
            if not image_path.is_absolute():
                image_path = path.parent / image_path
            if not image_path.is_file():
                raise DatasetError(f"{path}:{line}: no such image {image_path}")
            subject = row["subject"].strip()
            if not subject:
                raise DatasetError(f"{path}:{line}: empty subject")
            images.append(LabelledImage(image_path, subject, _label_of(row["label"], f"{path}:{line}")))
    return images


def dataset_scan(root: str | os.PathLike[str]) -> list[LabelledImage]:
    """Images under ``root/<subject>/<pain|nonpain>/`` in a stable order."""
    root = Path(root)
    images = []
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for label_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            label = _label_of(label_dir.name, str(label_dir))
            for image_path in sorted(label_dir.iterdir()):
                if image_path.suffix.lower() in IMAGE_SUFFIXES and image_path.is_file():
                    images.append(LabelledImage(image_path, subject_dir.name, label))
    return images


def dataset_read(source: str | os.PathLike[str]) -> list[LabelledImage]:
    """A dataset from a folder (layout or ``manifest.csv`` inside) or a CSV manifest file."""
    source = Path(source).expanduser()
    if source.is_file():
        images = manifest_read(source)
    elif source.is_dir():
        images = manifest_read(source / MANIFEST_NAME) if (source / MANIFEST_NAME).is_file() else dataset_scan(source)
    else:
        raise DatasetError(f"no dataset at {source}")
    if not images:
        raise DatasetError(f"{source}: no images found (expected <subject>/<pain|nonpain>/*.jpg|png or a manifest)")
    return images


def dataset_info(source: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``dataset.json`` marker of a folder written by ``export_training_set`` (else ``{}``)."""
    source = Path(source)
    marker = (source if source.is_dir() else source.parent) / DATASET_MARKER
    if marker.is_file():
        return json.loads(marker.read_text())
    return {}


def dataset_summary(images: Sequence[LabelledImage]) -> dict[str, Any]:
    """Counts a bundle's metadata and the admin page show: images, pain share, subjects."""
    per_subject: dict[str, dict[str, int]] = {}
    for image in images:
        entry = per_subject.setdefault(image.subject, {"pain": 0, "nonpain": 0})
        entry["pain" if image.label else "nonpain"] += 1
    n_pain = sum(image.label for image in images)
    return {
        "n_images": len(images),
        "n_pain": n_pain,
        "n_nonpain": len(images) - n_pain,
        "n_subjects": len(per_subject),
        "per_subject": per_subject,
    }


# =============================================================================================
# Face crops (cached)
# =============================================================================================


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    from inference.bundle import sha256_file

    return sha256_file(path)


def _file_identity(path: str) -> str:
    """sha256 of a weights file, hashed once per (path, size, mtime) rather than once per image."""
    stat = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class CropSettings:
    """How a face crop is made; every field is part of the cache key.

    ``detector="none"`` means the images are already face crops (e.g. exported from the
    platform, where they are the very crops the model saw): they are only letterboxed.
    """

    detector: str = "retinaface"
    detector_weights: str | None = None
    margin: float = DEFAULT_MARGIN
    size: int = 224
    fill: tuple[int, int, int] = (0, 0, 0)

    def key(self, file_sha256: str) -> str:
        weights_id = _file_identity(self.detector_weights) if self.detector_weights else ""
        recipe = json.dumps(
            {
                "v": CROP_RECIPE_VERSION,
                "detector": self.detector,
                "weights": weights_id,
                "margin": round(float(self.margin), 6),
                "size": int(self.size),
                "fill": list(self.fill),
            },
            sort_keys=True,
        )
        return hashlib.sha256(f"{file_sha256}:{recipe}".encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fill": list(self.fill), "recipe_version": CROP_RECIPE_VERSION}


@dataclass
class CropSet:
    """Face crops of a dataset: ``images[i]`` is cropped as ``crops[i]``; skipped files say why."""

    images: list[LabelledImage]
    crops: list[Image.Image]
    file_sha256: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache_hits: int = 0
    settings: CropSettings = field(default_factory=CropSettings)

    @property
    def labels(self) -> np.ndarray:
        return np.array([image.label for image in self.images], dtype=np.int64)

    @property
    def subjects(self) -> list[str]:
        return [image.subject for image in self.images]

    def subset(self, indices: Sequence[int]) -> CropSet:
        return CropSet(
            images=[self.images[i] for i in indices],
            crops=[self.crops[i] for i in indices],
            file_sha256=[self.file_sha256[i] for i in indices],
            settings=self.settings,
        )


def default_cache_dir() -> Path:
    """``$NEOPAIN_DATA_DIR/cache``."""
    return data_dir() / "cache"


def face_crops(
    images: Sequence[LabelledImage],
    *,
    settings: CropSettings | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> CropSet:
    """Decode, detect and crop each image as the serving pipeline does, via the crop cache.

    Images without a detectable face (or unreadable) are skipped and listed, as serving
    would route them to ``no_face``/``unreadable`` rather than classify them.
    """
    settings = settings or CropSettings()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    crop_root = cache / "crops"
    detector = None
    kept: list[LabelledImage] = []
    crops: list[Image.Image] = []
    hashes: list[str] = []
    skipped: list[tuple[str, str]] = []
    hits = 0
    for image in tqdm(images, desc="face crops", unit="img", disable=not progress, file=sys.stderr, leave=False):
        data = image.path.read_bytes()
        file_sha = hashlib.sha256(data).hexdigest()
        key = settings.key(file_sha)
        png = crop_root / key[:2] / f"{key}.png"
        miss_marker = png.with_suffix(".skip")
        if png.is_file():
            crop = Image.open(png)
            crop.load()
            kept.append(image)
            crops.append(crop.convert("RGB"))
            hashes.append(file_sha)
            hits += 1
            continue
        if miss_marker.is_file():
            skipped.append((str(image.path), miss_marker.read_text()))
            hits += 1
            continue
        try:
            decoded = decode_image(data)
        except UnreadableImage as exc:
            reason = f"unreadable: {exc.reason}"
            crop = None
        else:
            if settings.detector == "none":
                crop = letterbox(decoded, settings.size, settings.fill)
                reason = ""
            else:
                if detector is None:
                    detector = get_detector(settings.detector, weights=settings.detector_weights)
                face = select_face(detector.detect(decoded), decoded.size, settings.margin)
                if face is None:
                    crop, reason = None, "no face detected"
                else:
                    crop, reason = letterbox(crop_face(decoded, face), settings.size, settings.fill), ""
        png.parent.mkdir(parents=True, exist_ok=True)
        if crop is None:
            miss_marker.write_text(reason)
            skipped.append((str(image.path), reason))
            continue
        tmp = png.with_suffix(f".{os.getpid()}.tmp")
        crop.save(tmp, format="PNG")
        os.replace(tmp, png)
        kept.append(image)
        crops.append(crop)
        hashes.append(file_sha)
    if skipped:
        logger.warning("%d of %d images skipped (no face or unreadable)", len(skipped), len(images))
    return CropSet(images=kept, crops=crops, file_sha256=hashes, skipped=skipped, cache_hits=hits, settings=settings)


# =============================================================================================
# Model pieces: which part of the backbone trains
# =============================================================================================


class _Suffix(nn.Module):
    """The trainable tail of a backbone followed by the head: ``features -> logits``."""

    def __init__(self, tail: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.tail = tail
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tail(x))


class _FlattenPool(nn.Module):
    def __init__(self, blocks: Sequence[nn.Module], pool: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.blocks(x)), 1)


class _FerTail(nn.Module):
    def __init__(self, conv_4: nn.Module, embed: nn.Module) -> None:
        super().__init__()
        self.conv_4 = conv_4
        self.embed = embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(torch.flatten(self.conv_4(x), 1))


#: Blocks of ``backbone.features`` fine-tuned in ``"last"`` mode: MobileNetV2's last
#: inverted residual + its final 1x1 conv; ResNet50's layer4.
_LAST_BLOCKS = {"mobilenet_v2": 2, "resnet50": 1}


def backbone_split(model: PainNet, finetune: str) -> tuple[nn.Module, nn.Module]:
    """``(frozen_prefix, trainable_suffix)`` with ``suffix(prefix(x)) == model(x)``.

    The suffix shares parameters with ``model``: training it trains the model in place.
    """
    if finetune not in FINETUNE_MODES:
        raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {finetune!r}")
    backbone = model.backbone
    if finetune == "all":
        return nn.Identity(), _Suffix(backbone, model.head)
    if finetune == "head":
        return backbone, _Suffix(nn.Identity(), model.head)
    if model.backbone_name == "fer_cnn":
        prefix = nn.Sequential(backbone.conv_1, backbone.conv_2, backbone.conv_3)
        return prefix, _Suffix(_FerTail(backbone.conv_4, backbone.embed), model.head)
    blocks = list(backbone.features.children())
    n_last = _LAST_BLOCKS.get(model.backbone_name, 1)
    prefix = nn.Sequential(*blocks[:-n_last])
    return prefix, _Suffix(_FlattenPool(blocks[-n_last:], backbone.pool), model.head)


def _freeze_batchnorm_stats(module: nn.Module) -> None:
    """Backbone batch-norm layers keep their pretrained statistics (small batches, few images)."""
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.eval()


# =============================================================================================
# Training
# =============================================================================================


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


class FeatureBank:
    """Frozen-prefix outputs for every image: view 0 un-augmented, views 1..K augmented.

    Built once per (backbone, finetune, views, seed) and shared by every LOSOCV fold, which
    is what makes CPU training practical. Augmented views are drawn with the paper's
    rotation + flip (``train_transform``) from a seeded generator.
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
        augment = train_transform(self.spec)
        views: list[torch.Tensor] = []
        total = len(crops) * n_views
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
        bar.close()
        #: shape (n_views, n_images, *feature_shape)
        self.features = torch.stack(views)

    @property
    def n_views(self) -> int:
        return int(self.features.shape[0])

    def new_model(self) -> PainNet:
        """A fresh PainNet with the pretrained backbone (no disk read) and a seeded new head."""
        model = PainNet(self.config.backbone, pretrained=False)
        model.load_state_dict(self.pretrained_state)
        return model


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


def _forward_in_batches(module: nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    outputs = [module(inputs[start : start + batch_size]) for start in range(0, inputs.shape[0], batch_size)]
    return torch.cat(outputs) if outputs else torch.zeros((0, len(CLASSES)))


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
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.Adam(
        [p for p in suffix.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
        foreach=True,
    )
    generator = torch.Generator().manual_seed(seed)
    spec = model.preprocessing_spec
    augment = train_transform(spec)

    def train_inputs(batch_idx: np.ndarray) -> torch.Tensor:
        if config.finetune == "all":
            return torch.stack([augment(crops.crops[i]) for i in batch_idx]).to(device)
        assert bank is not None
        views = torch.randint(0, bank.n_views, (len(batch_idx),), generator=generator)
        return bank.features[views, torch.from_numpy(batch_idx)].to(device)

    def eval_logits(indices: np.ndarray) -> torch.Tensor:
        suffix.eval()
        with torch.inference_mode():
            if indices.size == 0:
                return torch.zeros((0, len(CLASSES)))
            if config.finetune == "all":
                inputs = batch_tensor([crops.crops[i] for i in indices], spec).to(device)
                return _forward_in_batches(model, inputs, 32).cpu()
            assert bank is not None
            return _forward_in_batches(suffix, bank.features[0, torch.from_numpy(indices)].to(device)).cpu()

    def snapshot() -> dict[str, torch.Tensor]:
        # Only the trained part changes: copying the frozen backbone every epoch would dominate.
        return {k: v.detach().clone() for k, v in suffix.state_dict().items()}

    best_loss = math.inf
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
            _freeze_batchnorm_stats(suffix.tail)
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
            running += loss.item() * batch_positions.size
            seen += batch_positions.size
        record = {"epoch": epoch, "train_loss": running / max(seen, 1)}
        if val_idx.size:
            val_loss = float(loss_fn(eval_logits(val_idx), y_val))
            record["val_loss"] = val_loss
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch, stale = val_loss, epoch, 0
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


def predict_p_pain(
    model: PainNet,
    crops: Sequence[Image.Image],
    *,
    config: TrainConfig | None = None,
    bank: FeatureBank | None = None,
    indices: Sequence[int] | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """p(pain) for crops, through the bank's view 0 when given (same numbers as the full model)."""
    model.eval()
    with torch.inference_mode():
        if bank is not None and config is not None and config.finetune != "all" and indices is not None:
            _, suffix = backbone_split(model, config.finetune)
            logits = _forward_in_batches(suffix, bank.features[0, torch.as_tensor(list(indices), dtype=torch.long)])
        else:
            if not crops:
                return np.zeros(0)
            logits = _forward_in_batches(model, batch_tensor(list(crops), model.preprocessing_spec), 32)
    return torch.softmax(logits / temperature, dim=1)[:, PAIN_INDEX].numpy().astype(np.float64)


# =============================================================================================
# Train one model for serving
# =============================================================================================


@dataclass
class TrainedModel:
    """A model ready to be saved as a bundle, with its held-out validation metrics."""

    model: PainNet
    temperature: float
    metrics: dict[str, Any]
    metadata: dict[str, Any]
    result: TrainResult


def served_temperature(p_pain: np.ndarray, labels: np.ndarray, calibrate: bool = True) -> tuple[float, float | None]:
    """(temperature to serve, NLL-optimal temperature or None when not fitted).

    Fitted on the validation subjects and clipped to :data:`SERVED_TEMPERATURE_BOUNDS`;
    1.0 (uncalibrated) when calibration is off or the validation set is too small.
    """
    if not calibrate or labels.size < MIN_CALIBRATION_IMAGES or len(set(labels.tolist())) < 2:
        return 1.0, None
    fitted = th.temperature_fit(p_pain=p_pain, labels=labels)
    low, high = SERVED_TEMPERATURE_BOUNDS
    return float(min(high, max(low, fitted))), fitted


def train_model(
    crops: CropSet,
    *,
    config: TrainConfig,
    alpha: float = 0.05,
    progress: bool = True,
    dataset: dict[str, Any] | None = None,
) -> TrainedModel:
    """Train on all subjects but the validation subjects; metrics from the validation subjects.

    The validation subjects early-stop training and are then the held-out set for the
    threshold table, the calibration temperature and the guarantee (so those figures are
    on subjects the weights never trained on, but not on fully untouched data: early
    stopping looked at them; LOSOCV via ``evaluate_model`` is the unbiased estimate).
    """
    subjects = crops.subjects
    train_subjects, val_subjects = validation_split(subjects, config.val_subjects, config.seed)
    train_idx = [i for i, s in enumerate(subjects) if s in set(train_subjects)]
    val_idx = [i for i, s in enumerate(subjects) if s in set(val_subjects)]
    if not val_idx:
        # One subject only: hold out a seeded 20% of its images instead (documented weaker check).
        rng = random.Random(f"val-images:{config.seed}")
        val_idx = sorted(rng.sample(range(len(subjects)), max(1, len(subjects) // 5))) if len(subjects) >= 5 else []
        train_idx = [i for i in range(len(subjects)) if i not in set(val_idx)]
    result = train_painnet(crops=crops, train_indices=train_idx, val_indices=val_idx, config=config, progress=progress)
    temperature, fitted = served_temperature(result.val_p_pain, result.val_labels, config.calibrate)
    served = th.temperature_apply(result.val_p_pain, temperature) if result.val_labels.size else result.val_p_pain
    metrics: dict[str, Any] = {}
    if result.val_labels.size:
        analysis = th.threshold_analysis(p_pain=served, labels=result.val_labels, alpha=alpha)
        analysis["ece"] = th.expected_calibration_error(p_pain=result.val_p_pain, labels=result.val_labels)
        analysis["ece_temperature_scaled"] = th.expected_calibration_error(p_pain=served, labels=result.val_labels)
        analysis["temperature"] = temperature
        analysis["temperature_fitted"] = fitted
        analysis["temperature_fitted_on"] = (
            f"validation subjects (NLL); served value clipped to {list(SERVED_TEMPERATURE_BOUNDS)}, "
            f"1.0 when fewer than {MIN_CALIBRATION_IMAGES} validation images or one class"
        )
        metrics.update(analysis)
        per_subject = _per_subject_accuracy(served, result.val_labels, [subjects[i] for i in val_idx])
        metrics["folds"] = per_subject
        metrics["per_subject_accuracy"] = {row["subject"]: row["accuracy"] for row in per_subject}
        accuracies = [row["accuracy"] for row in per_subject]
        metrics["accuracy_mean"] = float(np.mean(accuracies))
        metrics["accuracy_sd"] = float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0
    metrics.update(
        {
            "evaluation": "held-out validation subjects (also used for early stopping)",
            "backbone": config.backbone,
            "finetune": config.finetune,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "train_seconds": round(result.seconds, 2),
            "validation_subjects": val_subjects,
            "dataset": dataset or {},
            "history": result.history,
        }
    )
    metadata = {
        "architecture": "painnet",
        "backbone": config.backbone,
        "classes": list(CLASSES),
        "preprocessing": result.model.preprocessing_spec,
        "temperature": temperature,
        "training_data": {
            **(dataset or {}),
            "train_subjects": train_subjects,
            "validation_subjects": val_subjects,
            "train_sha256": sorted({crops.file_sha256[i] for i in train_idx}),
            "crop_settings": crops.settings.describe(),
            "skipped": len(crops.skipped),
        },
        "training": {
            **config.describe(),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "torch": torch.__version__,
        },
    }
    return TrainedModel(model=result.model, temperature=temperature, metrics=metrics, metadata=metadata, result=result)


def bundle_write(
    trained: TrainedModel,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str | None = None,
    description: str = "",
) -> str:
    """Save ``trained`` as an :mod:`inference.bundle` file; returns its sha256."""
    from inference.bundle import save_bundle

    now = dt.datetime.now(dt.UTC)
    metadata = {
        **trained.metadata,
        "name": name or f"painnet-{trained.metadata['backbone']}",
        "version": version or now.strftime("%Y%m%d-%H%M%S"),
        "metrics": trained.metrics,
        "description": description
        or (
            f"PainNet ({trained.metadata['backbone']}, fine-tune {trained.metadata['training']['finetune']}) "
            f"trained on {trained.metadata['training_data'].get('n_images', '?')} images of "
            f"{trained.metadata['training_data'].get('n_subjects', '?')} subjects."
        ),
    }
    return save_bundle(path, model=trained.model, metadata=metadata)


# =============================================================================================
# Leave-one-subject-out cross-validation
# =============================================================================================


def _per_subject_accuracy(p_pain: np.ndarray, labels: np.ndarray, subjects: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    subjects_arr = np.asarray(subjects)
    for subject in sorted(set(subjects)):
        mask = subjects_arr == subject
        m = th.binary_metrics(p_pain=p_pain[mask], labels=labels[mask])
        rows.append(
            {
                "subject": subject,
                "n": m["n"],
                "n_pain": m["n_pain"],
                "accuracy": m["accuracy"],
                "sensitivity": m["sensitivity"],
                "specificity": m["specificity"],
            }
        )
    return rows


def losocv(
    crops: CropSet,
    *,
    config: TrainConfig,
    alpha: float = 0.05,
    progress: bool = True,
    bank: FeatureBank | None = None,
) -> dict[str, Any]:
    """The paper's LOSOCV: per held-out subject, train on the others (early-stopping on a
    validation split of them) and test on it. Summary figures pool the out-of-fold predictions.

    Returns the metrics dict (``accuracy_mean``, ``accuracy_sd``, ``folds``, ``auc``,
    ``sensitivity``, ``specificity``, ``thresholds``, ``aurc``, ``ece``,
    ``ece_temperature_scaled``, ``temperature``, ``risk_coverage``, ``guarantee`` ...) plus
    ``"oof"`` (per-image p_pain, label, subject) for plots.
    """
    start_time = time.perf_counter()
    subjects = crops.subjects
    unique = sorted(set(subjects))
    if len(unique) < 3:
        raise DatasetError(f"LOSOCV needs at least 3 subjects (train, validation, test); got {len(unique)}")
    if bank is None and config.finetune != "all":
        bank = FeatureBank(crops.crops, config=config, progress=progress)
    labels = crops.labels
    oof = np.full(len(subjects), np.nan)
    folds = []
    for fold, held_out in enumerate(
        tqdm(unique, desc=f"LOSOCV {config.backbone}", unit="fold", disable=not progress, file=sys.stderr)
    ):
        others = [s for s in subjects if s != held_out]
        train_subjects, val_subjects = validation_split(others, config.val_subjects, config.seed * 7919 + fold)
        train_idx = [i for i, s in enumerate(subjects) if s in set(train_subjects)]
        val_idx = [i for i, s in enumerate(subjects) if s in set(val_subjects)]
        test_idx = [i for i, s in enumerate(subjects) if s == held_out]
        result = train_painnet(
            crops=crops,
            train_indices=train_idx,
            val_indices=val_idx,
            config=config,
            bank=bank,
            progress=False,
            fold_seed=fold + 1,
        )
        p_test = predict_p_pain(
            result.model, [crops.crops[i] for i in test_idx], config=config, bank=bank, indices=test_idx
        )
        oof[test_idx] = p_test
        m = th.binary_metrics(p_pain=p_test, labels=labels[test_idx])
        folds.append(
            {
                "subject": held_out,
                "n": m["n"],
                "n_pain": m["n_pain"],
                "accuracy": m["accuracy"],
                "sensitivity": m["sensitivity"],
                "specificity": m["specificity"],
                "validation_subjects": val_subjects,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
            }
        )
    accuracies = np.array([f["accuracy"] for f in folds], dtype=np.float64)
    analysis = th.threshold_analysis(p_pain=oof, labels=labels, alpha=alpha)
    # Out-of-sample calibration: each subject's temperature is fitted on the other subjects' predictions.
    subjects_arr = np.asarray(subjects)
    scaled = np.empty_like(oof)
    for subject in unique:
        mask = subjects_arr == subject
        t = th.temperature_fit(p_pain=oof[~mask], labels=labels[~mask])
        scaled[mask] = th.temperature_apply(oof[mask], t)
    analysis["ece_temperature_scaled"] = th.expected_calibration_error(p_pain=scaled, labels=labels)
    analysis["temperature_fitted_on"] = (
        "ece_temperature_scaled: cross-fitted (each subject scaled by a temperature fitted on the others); "
        "temperature: fitted on all out-of-fold predictions"
    )
    return {
        "accuracy_mean": float(accuracies.mean()),
        "accuracy_sd": float(accuracies.std(ddof=1)) if accuracies.size > 1 else 0.0,
        "accuracy_pooled": analysis.pop("accuracy"),
        **analysis,
        "folds": folds,
        "per_subject_accuracy": {f["subject"]: f["accuracy"] for f in folds},
        "backbone": config.backbone,
        "finetune": config.finetune,
        "evaluation": "leave-one-subject-out cross-validation (pooled out-of-fold predictions)",
        "config": config.describe(),
        "seconds": round(time.perf_counter() - start_time, 2),
        "oof": {"p_pain": oof.tolist(), "labels": labels.tolist(), "subjects": list(subjects)},
    }
