"""A planted-signal face dataset for the learning-loop tests and the docs' measured figures.

Real face pixels (``skimage.data.astronaut()``, public domain: NASA), varied per subject by
framing shift, scale, brightness and hue so subjects differ the way neonates and cameras
do; the *pain* class carries a planted signal inside the face (a dark horizontal band over
the mouth, as a grimace's open dark mouth would), so a working training pipeline must
reach high leave-one-subject-out accuracy, and a broken one (labels shuffled, crops
misaligned, augmentations destroying the signal) cannot.

``python -m tests.learning.planted OUT [--subjects 6] [--pain 6] [--nonpain 10]`` writes
``OUT/<subject>/<pain|nonpain>/*.png`` (the dataset layout train_model reads).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

# Face box of the astronaut image (RetinaFace): x 178-273, y 57-177; mouth around y 138.
_FACE_CENTRE = (225.0, 120.0)
_MOUTH_BAND = (193, 131, 257, 149)  # x0, y0, x1, y1 in the source image
_FRAME_HALF = 120  # half side of the framed region in source pixels (face + shoulders)


def _source() -> np.ndarray:
    from skimage import data

    return data.astronaut().astype(np.float32)


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    hsv = np.asarray(image.convert("HSV"), dtype=np.float32)
    hsv[..., 0] = (hsv[..., 0] + shift * 255.0) % 255.0
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


def planted_frame(*, subject: int, index: int, pain: bool, size: int = 160, seed: int = 0) -> Image.Image:
    """One frame: subject-specific framing and colour, per-frame jitter, the band if pain."""
    subject_rng = np.random.default_rng([seed, subject])
    scale = subject_rng.uniform(0.85, 1.15)
    offset = subject_rng.uniform(-18, 18, size=2)
    brightness = subject_rng.uniform(0.75, 1.2)
    hue = subject_rng.uniform(-0.06, 0.06)
    frame_rng = np.random.default_rng([seed, subject, index, int(pain)])
    pixels = _source()
    if pain:
        x0, y0, x1, y1 = _MOUTH_BAND
        thickness = frame_rng.integers(-3, 4)
        pixels[y0 - thickness : y1 + thickness, x0:x1] *= frame_rng.uniform(0.2, 0.35)
    jitter = frame_rng.uniform(-6, 6, size=2)
    half = _FRAME_HALF * scale * frame_rng.uniform(0.95, 1.05)
    cx, cy = _FACE_CENTRE[0] + offset[0] + jitter[0], _FACE_CENTRE[1] + offset[1] + jitter[1]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image = image.rotate(frame_rng.uniform(-5, 5), center=(cx, cy), resample=Image.Resampling.BILINEAR)
    image = image.crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half))).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    image = ImageEnhance.Brightness(image).enhance(brightness * frame_rng.uniform(0.95, 1.05))
    image = _shift_hue(image, hue)
    noisy = np.asarray(image, dtype=np.float32) + frame_rng.normal(0, 3.0, size=(size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def planted_dataset_write(
    out: str | Path, *, subjects: int = 6, pain: int = 6, nonpain: int = 10, size: int = 160, seed: int = 0
) -> Path:
    """Write ``out/s<NN>/<pain|nonpain>/<k>.png`` and return ``out``. Imbalanced like COPE."""
    out = Path(out)
    for s in range(subjects):
        for label, count in (("pain", pain), ("nonpain", nonpain)):
            folder = out / f"s{s:02d}" / label
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                planted_frame(subject=s, index=k, pain=label == "pain", size=size, seed=seed).save(
                    folder / f"{k:03d}.png"
                )
    return out


def planted_manifest_write(dataset: str | Path, manifest: str | Path) -> Path:
    """A CSV manifest (path, subject, label) over a folder-layout dataset, paths relative to the CSV."""
    dataset, manifest = Path(dataset), Path(manifest)
    rows = sorted(dataset.glob("*/*/*.png"))
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "subject", "label"])
        for path in rows:
            writer.writerow(
                [
                    str(path.relative_to(manifest.parent) if path.is_relative_to(manifest.parent) else path),
                    path.parent.parent.name,
                    path.parent.name,
                ]
            )
    return manifest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--pain", type=int, default=6)
    parser.add_argument("--nonpain", type=int, default=10)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = planted_dataset_write(
        args.out, subjects=args.subjects, pain=args.pain, nonpain=args.nonpain, size=args.size, seed=args.seed
    )
    print(f"wrote {len(list(path.glob('*/*/*.png')))} images to {path}")
