"""Face crop, letterbox and the tensor transforms, defined once for training and serving.

The paper resizes each detected face to 224x224 "while preserving the original aspect
ratio through adaptive padding": :func:`letterbox` scales the longer side to the target
and pads the shorter one symmetrically. The exact numbers a model saw in training live
in a small *preprocessing spec* dict stored in the model bundle, and both
:func:`eval_transform` and :func:`train_transform` are built from it, so serving cannot
drift from training.

Spec keys: ``size`` (letterbox side, 224), ``center_crop`` (fraction of the letterboxed
square kept around its centre before resizing, 1.0 = all; lets a backbone trained on
tight face boxes see a tight face although the pipeline crops with a margin),
``input_size`` (side the backbone receives; 48 for the FER CNN), ``mean`` / ``std`` (per
channel), ``grayscale`` (bool) and ``fill`` (RGB padding colour).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

CROP_SIZE = 224
#: Black padding, as Keras' zero padding in the paper's pipeline.
DEFAULT_FILL: tuple[int, int, int] = (0, 0, 0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Paper: "image rotation (0 deg - 15 deg) and horizontal flip".
TRAIN_ROTATION_DEGREES = (0.0, 15.0)

Box = tuple[int, int, int, int]
PreprocessingSpec = dict[str, Any]


class BoxLike(Protocol):
    """Anything with numeric ``x, y, w, h`` attributes (e.g. :class:`inference.detect.FaceBox`)."""

    @property
    def x(self) -> float: ...

    @property
    def y(self) -> float: ...

    @property
    def w(self) -> float: ...

    @property
    def h(self) -> float: ...


def make_spec(
    *,
    size: int = CROP_SIZE,
    input_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    grayscale: bool = False,
    fill: Sequence[int] = DEFAULT_FILL,
    center_crop: float = 1.0,
) -> PreprocessingSpec:
    """Build a validated preprocessing spec (plain JSON-able types, safe for ``weights_only``)."""
    return validate_spec(
        {
            "size": size,
            "center_crop": center_crop,
            "input_size": size if input_size is None else input_size,
            "mean": list(mean),
            "std": list(std),
            "grayscale": grayscale,
            "fill": list(fill),
        }
    )


def validate_spec(spec: Mapping[str, Any]) -> PreprocessingSpec:
    """Return a normalised copy of ``spec`` or raise ``ValueError`` naming the bad key."""
    try:
        size = int(spec["size"])
        input_size = int(spec.get("input_size", size))
        grayscale = bool(spec.get("grayscale", False))
        mean = [float(v) for v in spec["mean"]]
        std = [float(v) for v in spec["std"]]
        fill = [int(v) for v in spec.get("fill", DEFAULT_FILL)]
        center_crop = float(spec.get("center_crop", 1.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid preprocessing spec {dict(spec)!r}: {exc}") from exc
    channels = 1 if grayscale else 3
    if size < 8 or input_size < 8:
        raise ValueError(f"preprocessing sizes too small: size={size}, input_size={input_size}")
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std need {channels} values for grayscale={grayscale}")
    if any(s <= 0 for s in std):
        raise ValueError("std values must be positive")
    if len(fill) != 3 or any(not 0 <= v <= 255 for v in fill):
        raise ValueError(f"fill must be three 0-255 values, got {fill}")
    if not 0.1 <= center_crop <= 1.0:
        raise ValueError(f"center_crop must lie in [0.1, 1], got {center_crop}")
    return {
        "size": size,
        "center_crop": center_crop,
        "input_size": input_size,
        "mean": mean,
        "std": std,
        "grayscale": grayscale,
        "fill": fill,
    }


def expand_box(box: Box | BoxLike, margin: float, image_size: tuple[int, int]) -> Box:
    """Grow ``(x, y, w, h)`` by ``margin`` x its width/height on every side, clipped to the image.

    A margin keeps the forehead and chin, which carry brow bulge and mouth stretch (NIPS
    facial cues), that tight detector boxes cut off.
    """
    x, y, w, h = _box_tuple(box)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    width, height = image_size
    x0 = max(0.0, x - margin * w)
    y0 = max(0.0, y - margin * h)
    x1 = min(float(width), x + w + margin * w)
    y1 = min(float(height), y + h + margin * h)
    ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
    ix1, iy1 = int(np.ceil(x1)), int(np.ceil(y1))
    if ix1 <= ix0 or iy1 <= iy0:
        raise ValueError(f"box {box} lies outside the {width}x{height} image")
    return ix0, iy0, ix1 - ix0, iy1 - iy0


def crop_face(image: Image.Image, box: Box | BoxLike, margin: float = 0.0) -> Image.Image:
    """Crop ``box`` (expanded by ``margin`` and clipped) out of ``image``."""
    x, y, w, h = expand_box(box, margin, image.size)
    return image.crop((x, y, x + w, y + h))


def letterbox(
    image: Image.Image,
    size: int = CROP_SIZE,
    fill: Sequence[int] = DEFAULT_FILL,
) -> Image.Image:
    """Aspect-preserving resize to fit ``size`` x ``size`` plus symmetric padding (RGB out)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if (width, height) == (size, size):
        return image
    scale = size / max(width, height)
    new_w = max(1, min(size, round(width * scale)))
    new_h = max(1, min(size, round(height * scale)))
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size), tuple(int(v) for v in fill))
    canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


class Letterbox:
    """Picklable transform wrapper around :func:`letterbox` (DataLoader workers pickle it)."""

    def __init__(self, size: int = CROP_SIZE, fill: Sequence[int] = DEFAULT_FILL) -> None:
        self.size = int(size)
        self.fill = tuple(int(v) for v in fill)

    def __call__(self, image: Image.Image) -> Image.Image:
        return letterbox(image, self.size, self.fill)

    def __repr__(self) -> str:
        return f"Letterbox(size={self.size}, fill={self.fill})"


def _pil_stage(spec: PreprocessingSpec) -> list[Any]:
    """PIL steps after any augmentation: centre crop, the backbone's input size, colour mode."""
    steps: list[Any] = []
    side = spec["size"]
    if spec["center_crop"] < 1.0:
        side = max(1, round(spec["size"] * spec["center_crop"]))
        steps.append(T.CenterCrop(side))
    if spec["input_size"] != side:
        steps.append(T.Resize((spec["input_size"], spec["input_size"]), interpolation=InterpolationMode.BILINEAR))
    if spec["grayscale"]:
        steps.append(T.Grayscale(num_output_channels=1))
    return steps


def eval_transform(spec: Mapping[str, Any]) -> T.Compose:
    """Deterministic transform for validation and serving: crop image -> normalised tensor."""
    spec = validate_spec(spec)
    return T.Compose(
        [
            Letterbox(spec["size"], spec["fill"]),
            *_pil_stage(spec),
            T.ToTensor(),
            T.Normalize(spec["mean"], spec["std"]),
        ]
    )


def train_transform(spec: Mapping[str, Any]) -> T.Compose:
    """Training transform: :func:`eval_transform` plus the paper's rotation and flip."""
    spec = validate_spec(spec)
    return T.Compose(
        [
            Letterbox(spec["size"], spec["fill"]),
            T.RandomRotation(
                degrees=TRAIN_ROTATION_DEGREES,
                interpolation=InterpolationMode.BILINEAR,
                fill=list(spec["fill"]),
            ),
            T.RandomHorizontalFlip(p=0.5),
            *_pil_stage(spec),
            T.ToTensor(),
            T.Normalize(spec["mean"], spec["std"]),
        ]
    )


class RandomJpeg:
    """Re-encode as JPEG at a random quality (``p`` of the time): the compression bedside
    cameras and video links add. Draws from torch's generator, so a seeded run repeats."""

    def __init__(self, quality: tuple[int, int] = (30, 90), p: float = 0.5) -> None:
        self.quality = quality
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        import io

        if float(torch.rand(())) >= self.p:
            return image
        quality = int(torch.randint(self.quality[0], self.quality[1] + 1, ()))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert(image.mode)


def bedside_transform(spec: Mapping[str, Any]) -> T.Compose:
    """Training transform of the default recipe: what a bedside camera varies, on top of
    :func:`eval_transform`. Rotation (+-15 degrees, a baby's head rolls), flip, small crops
    and shifts (the face box moves), brightness/contrast/saturation (incubator light, day and
    night), blur (focus, motion) and JPEG quality (compression). Every draw is from torch's
    generator (seeded by the trainer)."""
    spec = validate_spec(spec)
    size = spec["size"]
    return T.Compose(
        [
            Letterbox(size, spec["fill"]),
            T.RandomRotation(degrees=15.0, interpolation=InterpolationMode.BILINEAR, fill=list(spec["fill"])),
            T.RandomHorizontalFlip(p=0.5),
            T.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
            T.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.2),
            T.RandomApply([T.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5))], p=0.4),
            RandomJpeg(quality=(30, 90), p=0.5),
            *_pil_stage(spec),
            T.ToTensor(),
            T.Normalize(spec["mean"], spec["std"]),
        ]
    )


def batch_tensor(crops: Sequence[Image.Image], spec: Mapping[str, Any]) -> torch.Tensor:
    """Stack ``crops`` into one normalised ``(N, C, H, W)`` float tensor.

    Numerically the same as ``torch.stack([eval_transform(spec)(c) for c in crops])``
    (a test holds it to that) but converts and normalises the whole batch at once. The
    result is in channels-last memory layout (it comes from HWC pixels), which is what
    the serving modules use on CPU, so no layout copy is needed before the forward pass.
    """
    spec = validate_spec(spec)
    if not crops:
        raise ValueError("batch_tensor needs at least one crop")
    pil_steps = T.Compose([Letterbox(spec["size"], spec["fill"]), *_pil_stage(spec)])
    arrays = [np.asarray(pil_steps(crop), dtype=np.uint8) for crop in crops]
    stacked = np.stack(arrays)
    if stacked.ndim == 3:  # grayscale: (N, H, W)
        stacked = stacked[..., None]
    batch = torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return batch.sub_(mean).div_(std)


def _box_tuple(box: Box | BoxLike) -> tuple[float, float, float, float]:
    if isinstance(box, tuple | list):
        x, y, w, h = (float(v) for v in box)
    else:
        x, y, w, h = float(box.x), float(box.y), float(box.w), float(box.h)
    if w <= 0 or h <= 0:
        raise ValueError(f"box has non-positive size: {box}")
    return x, y, w, h
