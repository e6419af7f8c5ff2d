"""The change signals behind :mod:`inference.keyframes`: a tracked, aligned face patch and the whole scene.

See :mod:`inference.keyframes` for how they become keyframes. Causal (one frame at a time), so
the offline selection and :class:`~inference.keyframes.LiveKeyframes` share them.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from inference.detect import FaceDetector

#: Width the signals are computed at; full resolution adds cost, not signal.
ANALYSIS_WIDTH = 320
#: Side of the normalised face patch and of its blocks (64 / 8 = an 8x8 grid).
FACE_PATCH = 64
FACE_BLOCK = 8
#: Share of the detector box added on every side, so brows and chin stay in the patch.
FACE_MARGIN = 0.0
#: Least sigma per signal. Scene (mean LUV, 0-255): a change must move the whole frame by ~1 unit,
#: so a codec refresh of a still clip (0.1 -> 0.6) is not one, while a hand, a lamp or a cut (20-100)
#: is. Face (normalised patch units): a perfectly still synthetic clip has no noise to measure.
MIN_SIGMA = {"scene": 0.15, "face": 0.02}


class ChangeSignal:
    """The face and scene change signals of a frame sequence, one frame at a time (causal).

    ``update(frame_bgr)`` returns ``(scene, face)`` for that frame against the frame
    ``lag_frames`` earlier: ``nan`` until there is such a frame, and ``face`` is ``nan``
    whenever no face is tracked.
    """

    def __init__(self, *, lag_frames: int, detector: FaceDetector | None, detect_every: int) -> None:
        if lag_frames < 1:
            raise ValueError("lag_frames must be >= 1")
        self.lag_frames = lag_frames
        self.detector = detector
        self.detect_every = max(1, detect_every)
        self.faces_found = 0
        self._scene: deque[np.ndarray] = deque(maxlen=lag_frames + 1)
        # (box, patch): a patch cut with another box is mapped into the newer box before comparing.
        self._faces: deque[tuple[tuple[int, int, int, int], np.ndarray] | None] = deque(maxlen=lag_frames + 1)
        self._box: tuple[int, int, int, int] | None = None
        self._template: np.ndarray | None = None
        self._count = 0
        self._window = cv2.createHanningWindow((FACE_PATCH, FACE_PATCH), cv2.CV_64F)

    def update(self, frame_bgr: np.ndarray) -> tuple[float, float]:
        small = _analysis_frame(frame_bgr)
        # The scene signal is for gross changes (a hand, the lamp, a cut): half the analysis width is plenty.
        luv = cv2.cvtColor(cv2.resize(small, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2LUV)
        if self.detector is not None:
            self._track(frame_bgr, small)
        self._count += 1
        self._scene.append(luv)
        self._faces.append((self._box, self._face_patch(frame_bgr)) if self._box is not None else None)
        if len(self._scene) <= self.lag_frames:
            return math.nan, math.nan
        earlier = self._scene[0]
        scene = float(cv2.absdiff(luv, earlier).mean()) if earlier.shape == luv.shape else math.nan
        now, before = self._faces[-1], self._faces[0]
        if now is None or before is None:
            return scene, math.nan
        valid = None
        earlier_patch = before[1]
        if before[0][2:] != now[0][2:]:
            # The box was resized in between (a new detection): a different crop of the same face, so
            # map the older patch into the newer box first; what it did not cover is left out.
            earlier_patch, valid = _patch_into_box(earlier_patch, before[0], now[0])
        return scene, _face_difference(earlier_patch, now[1], self._window, valid=valid)

    def _track(self, frame_bgr: np.ndarray, small_bgr: np.ndarray) -> None:
        """Detector every ``detect_every`` frames; template matching near the last box in between.

        The box (full-resolution pixels, the detector's tight box: a margin would bring in background
        that does not move with the head) keeps its size while detections agree within 30% (a small
        face's box jitters by more than 15%) and its place while they agree within 10%: the
        detector's jitter would otherwise read as the face moving, growing or shrinking. When the
        size does change, the older patches are mapped into the new box before comparing.
        """
        grey = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY)
        scale = frame_bgr.shape[1] / small_bgr.shape[1]
        if self._count % self.detect_every == 0:
            face = self._detect(small_bgr, scale) or (self._detect(frame_bgr, 1.0) if scale > 1 else None)
            if face is not None:
                x, y, w, h = face
                if self._box is not None:
                    old_x, old_y, old_w, old_h = self._box
                    if abs(w - old_w) <= 0.3 * old_w and abs(h - old_h) <= 0.3 * old_h:
                        x, y, w, h = x + (w - old_w) // 2, y + (h - old_h) // 2, old_w, old_h
                        if abs(x - old_x) <= 0.1 * w and abs(y - old_y) <= 0.1 * h:
                            x, y = old_x, old_y  # the tracker already holds it: no jump for the jitter
                self._box = _clip_box((x, y, w, h), frame_bgr.shape)
                sx, sy, sw, sh = (round(v / scale) for v in self._box)
                self._template = grey[sy : sy + sh, sx : sx + sw].copy()
                self.faces_found += 1
                return
        if self._box is None or self._template is None or self._template.size == 0:
            return
        th, tw = self._template.shape
        sx, sy = round(self._box[0] / scale), round(self._box[1] / scale)
        height, width = grey.shape
        # Search a window one half-box wider on each side: a head does not jump further between detections.
        x0, y0 = max(0, sx - tw // 2), max(0, sy - th // 2)
        x1, y1 = min(width, sx + tw + tw // 2), min(height, sy + th + th // 2)
        region = grey[y0:y1, x0:x1]
        if region.shape[0] < th or region.shape[1] < tw:
            return
        scores = cv2.matchTemplate(region, self._template, cv2.TM_CCOEFF_NORMED)
        _min, best, _at_min, (bx, by) = cv2.minMaxLoc(scores)
        if best >= 0.3:
            x, y, w, h = self._box
            self._box = _clip_box((round((x0 + bx) * scale), round((y0 + by) * scale), w, h), frame_bgr.shape)

    def _detect(self, image_bgr: np.ndarray, scale: float) -> tuple[int, int, int, int] | None:
        """The face box (full-resolution pixels) in ``image_bgr``, a frame downscaled by ``scale``.

        The analysis frame first (a quarter of the pixels of 640x480: a quarter of the cost), the
        full frame only when that finds nothing (a small face).
        """
        from inference.detect import select_face

        rgb = Image.fromarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        face = select_face(self.detector.detect(rgb), rgb.size, margin=FACE_MARGIN)  # type: ignore[union-attr]
        if face is None or face.w * scale < 16 or face.h * scale < 16:
            return None
        return round(face.x * scale), round(face.y * scale), round(face.w * scale), round(face.h * scale)

    def _face_patch(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The tracked box from the full-resolution frame as a 64x64 zero-mean, unit-contrast grey patch."""
        x, y, w, h = self._box  # type: ignore[misc]
        grey = cv2.cvtColor(frame_bgr[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)
        patch = cv2.resize(grey, (FACE_PATCH, FACE_PATCH), interpolation=cv2.INTER_AREA)
        # Blurred, so sensor noise and the warp's interpolation (a low-pass) do not pass for a change.
        patch = cv2.GaussianBlur(patch.astype(np.float64), (0, 0), 1.2)
        return (patch - patch.mean()) / (patch.std() + 1.0)


def _clip_box(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Move a box inside the frame, keeping its size where the frame allows."""
    x, y, w, h = box
    height, width = shape[:2]
    w, h = min(w, width), min(h, height)
    return min(max(0, x), width - w), min(max(0, y), height - h), w, h


def _patch_into_box(
    patch: np.ndarray, box: tuple[int, int, int, int], target: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``patch`` (cut from ``box``) as it would be cut from ``target``, and where it is defined."""
    (x0, y0, w0, h0), (x1, y1, w1, h1) = box, target
    sx, sy = w0 / w1, h0 / h1
    matrix = np.float64([[sx, 0, (x0 - x1) * FACE_PATCH / w1], [0, sy, (y0 - y1) * FACE_PATCH / h1]])
    size = (FACE_PATCH, FACE_PATCH)
    mapped = cv2.warpAffine(patch, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    covered = cv2.warpAffine(np.ones(size, np.float64), matrix, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    return mapped, covered > 0.999


def _face_difference(
    before: np.ndarray, now: np.ndarray, window: np.ndarray, *, valid: np.ndarray | None = None
) -> float:
    """Largest block-mean absolute difference of two normalised face patches after alignment.

    ``valid`` (optional) marks the pixels ``before`` really covers; blocks with any other are left out.
    """
    # Copies: OpenCV applies the window to its inputs in place.
    (dx, dy), _response = cv2.phaseCorrelate(before.copy(), now.copy(), window)
    if abs(dx) > FACE_PATCH / 4 or abs(dy) > FACE_PATCH / 4:  # no sensible alignment: compare as they are
        dx, dy = 0.0, 0.0
    shift = np.float64([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(
        before, shift, (FACE_PATCH, FACE_PATCH), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    diff = np.abs(now - moved)
    if valid is not None:
        covered = cv2.warpAffine(valid.astype(np.float64), shift, (FACE_PATCH, FACE_PATCH), borderValue=0.0)
        diff = np.where(covered > 0.999, diff, np.nan)
    border = FACE_BLOCK // 2  # the warp's reflected border is not the face
    inner = diff[border:-border, border:-border]
    side = inner.shape[0] // FACE_BLOCK * FACE_BLOCK
    blocks = inner[:side, :side].reshape(side // FACE_BLOCK, FACE_BLOCK, side // FACE_BLOCK, FACE_BLOCK)
    means = blocks.mean(axis=(1, 3))  # nan where a block is not fully covered
    return float(np.nanmax(means)) if np.isfinite(means).any() else math.nan


def noise_scores(values: np.ndarray, *, min_sigma: float) -> np.ndarray:
    """``(value - median) / sigma`` with sigma from the median absolute deviation (nan stays nan).

    ``sigma = max(1.4826 * MAD, 0.1 * median, min_sigma)``: the MAD is the clip's own noise;
    the relative term keeps a clip whose signal is almost constant (MAD near 0) from calling
    every ripple a change; ``min_sigma`` does the same for a perfectly still synthetic clip.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full(values.shape, np.nan)
    median = float(np.median(finite))
    mad = float(np.median(np.abs(finite - median)))
    sigma = max(1.4826 * mad, 0.1 * abs(median), min_sigma)
    return (values - median) / sigma


def combined_scores(scene: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Per frame, the larger of the two signals' noise scores (a signal that is nan counts as absent)."""
    z_scene = noise_scores(scene, min_sigma=MIN_SIGMA["scene"])
    z_face = noise_scores(face, min_sigma=MIN_SIGMA["face"])
    return np.fmax(z_scene, z_face)


def _analysis_frame(frame_bgr: np.ndarray) -> np.ndarray:
    height, width = frame_bgr.shape[:2]
    if width > ANALYSIS_WIDTH:
        new_h = max(1, round(height * ANALYSIS_WIDTH / width))
        frame_bgr = cv2.resize(frame_bgr, (ANALYSIS_WIDTH, new_h), interpolation=cv2.INTER_AREA)
    return frame_bgr
