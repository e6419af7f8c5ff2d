"""Synthetic bedside clips whose only scripted change is a facial expression (tests and bench).

A real face (scikit-image's public-domain astronaut, head and shoulders) lies on a blanket-like
background; OpenCV draws expression changes onto it: an eye squeeze (lids closed, creases at the
corners), a brow lowering (brows pulled down, a vertical furrow between them) or an open mouth
(a cry). Optional: breathing sway (the head rises, shifts and grows by ~1% at 50 breaths/min,
plus a slow drift), sensor noise, a ramped rather than abrupt change, a small or close face, and
the codec (mp4v, or MJPG in .avi). Used by ``tests/inference/test_inference_keyframes.py`` and
``scripts/bench_keyframes.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

EXPRESSIONS = ("eyes", "brow", "mouth")
#: Landmarks in the 220x240 head crop (RetinaFace on the astronaut, rounded).
_EYES = ((75, 81), (117, 83))
_MOUTH = (93, 121)
_BROWS = (((60, 66), (86, 70)), ((104, 71), (130, 68)))
_CROP = (slice(20, 260), slice(130, 350))


@dataclass(frozen=True)
class ExpressionScript:
    """What a clip shows: which expression, when it starts and ends, how it is filmed."""

    expression: str = "eyes"
    #: Times (s) at which the expression switches on / off, alternately: on at 3, off at 6, on at 9.
    switches: tuple[float, ...] = (3.0, 6.0, 9.0)
    seconds: float = 12.0
    fps: float = 25.0
    #: 0: abrupt; else the change takes this long (linear blend).
    ramp_s: float = 0.0
    #: Head height as a share of the 480 px frame height: 0.25 small, 0.5 usual, 0.9 close.
    face_share: float = 0.5
    sway: bool = True
    noise: bool = True
    codec: str = "mp4v"
    seed: int = 0
    size: tuple[int, int] = field(default=(640, 480))

    def __post_init__(self) -> None:
        if self.expression not in EXPRESSIONS and self.expression != "none":
            raise ValueError(f"expression must be one of {EXPRESSIONS} or 'none', got {self.expression!r}")
        if self.codec not in ("mp4v", "MJPG"):
            raise ValueError("codec must be mp4v or MJPG")

    @property
    def suffix(self) -> str:
        return ".mp4" if self.codec == "mp4v" else ".avi"

    def intensity(self, t: float) -> float:
        """How far the expression is on at time ``t`` (0 neutral .. 1 full)."""
        if self.expression == "none":
            return 0.0
        level = 0.0
        for k, start in enumerate(self.switches):
            target = 1.0 if k % 2 == 0 else 0.0
            if t < start:
                break
            done = 1.0 if self.ramp_s <= 0 else min(1.0, (t - start) / self.ramp_s)
            level = level + (target - level) * done
        return level


@lru_cache(maxsize=1)
def _neutral_head() -> np.ndarray:
    from skimage import data as skdata

    return cv2.cvtColor(np.ascontiguousarray(skdata.astronaut()[_CROP]), cv2.COLOR_RGB2BGR)


@lru_cache(maxsize=4)
def expression_head(expression: str) -> np.ndarray:
    """The head crop (BGR, 240x220) with ``expression`` drawn at full strength."""
    head = _neutral_head().copy()
    skin = tuple(int(v) for v in head[92:100, 88:100].reshape(-1, 3).mean(axis=0))
    dark = (30, 40, 70)
    if expression == "eyes":
        for cx, cy in _EYES:
            cv2.ellipse(head, (cx, cy), (13, 8), 0, 0, 360, skin, -1)
            cv2.ellipse(head, (cx, cy - 2), (12, 4), 0, 10, 170, dark, 2)  # the closed lid
            side = -1 if cx < 96 else 1
            for dy in (-4, 0, 4):  # creases at the outer corner
                cv2.line(head, (cx + side * 13, cy + dy), (cx + side * 19, cy + dy + side * dy // 2), dark, 1)
    elif expression == "brow":
        brow = (40, 60, 95)
        for (x0, y0), (x1, y1) in _BROWS:
            # Pulled down, the inner end most (the brow bulge of a pain face).
            inner_is_first = abs(x0 - 96) < abs(x1 - 96)
            cv2.line(head, (x0, y0 + (10 if inner_is_first else 4)), (x1, y1 + (4 if inner_is_first else 10)), brow, 5)
        cv2.line(head, (91, 70), (92, 84), dark, 2)  # the vertical furrow between the brows
        cv2.line(head, (98, 70), (97, 84), dark, 2)
    elif expression == "mouth":
        cv2.ellipse(head, _MOUTH, (17, 11), 0, 0, 360, (40, 30, 90), -1)
        cv2.ellipse(head, (_MOUTH[0], _MOUTH[1] + 5), (9, 4), 0, 0, 360, (90, 90, 190), -1)  # tongue
    return head


def _blanket(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    blanket = np.stack(
        [110 + 25 * np.sin(xx / 37.0) * np.cos(yy / 53.0), 140 + 20 * np.sin(yy / 29.0), 170 + 15 * np.cos(xx / 41.0)],
        axis=-1,
    )
    return blanket + rng.normal(0, 6, blanket.shape).astype(np.float32)


def write_expression_clip(path: Path, script: ExpressionScript) -> int:
    """Write the clip ``script`` describes to ``path``; returns its frame count."""
    width, height = script.size
    rng = np.random.default_rng(script.seed)
    background = _blanket(width, height, rng)
    neutral = _neutral_head().astype(np.float32)
    drawn = expression_head(script.expression).astype(np.float32) if script.expression != "none" else neutral
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*script.codec), script.fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {script.codec} here")
    count = int(round(script.seconds * script.fps))
    base_scale = script.face_share * height / neutral.shape[0]
    try:
        for index in range(count):
            t = index / script.fps
            level = script.intensity(t)
            head = neutral + (drawn - neutral) * level
            scale, dx, dy = base_scale, 0.0, 0.0
            if script.sway:
                breath = math.sin(2 * math.pi * t / 1.2)
                scale *= 1.0 + 0.01 * breath
                dx = 3.0 * math.sin(2 * math.pi * t / 7.0) + 0.8 * breath
                dy = -1.5 * breath + 2.0 * math.sin(2 * math.pi * t / 5.0)
            # One affine warp: sub-pixel sway, as a real camera sees it.
            cx, cy = width / 2 + dx, height / 2 + dy
            matrix = np.array(
                [[scale, 0, cx - scale * neutral.shape[1] / 2], [0, scale, cy - scale * neutral.shape[0] / 2]],
                dtype=np.float32,
            )
            frame = cv2.warpAffine(
                head,
                matrix,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_TRANSPARENT,
                dst=background.copy(),
            )
            if script.noise:
                frame += rng.normal(0, 2.5, frame.shape).astype(np.float32)
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return count


def change_times(script: ExpressionScript) -> list[float]:
    """The scripted changes a keyframe must catch (start times within the clip)."""
    if script.expression == "none":
        return []
    return [t for t in script.switches if t < script.seconds]
