"""Keyframes from a clip: the frames where the baby's face changes, plus a periodic sample.

The paper extracted keyframes at local maxima of the inter-frame difference in CIELUV
(after A. Walia, KeyFramesExtraction). On a bedside clip the whole-frame difference misses
what matters: an eye squeeze moves a few hundred pixels (mean LUV difference 0.2-0.5) while
codec refreshes (0.8) and a one-pixel breathing sway (2.3) move the whole frame. So:

1. **Two change signals per analysed frame**, each between the frame and the one ``lag_s``
   earlier (so a change ramped over a few hundred milliseconds adds up instead of spreading
   into many small steps):

   * *face*: the face is found by a detector every ``detect_every_s`` and followed by template
     matching in between (cheap; never drifts, the template is the last detection's patch).
     Both face patches are brought to 64x64 grey, normalised to zero mean / unit contrast
     (a lamp does not count as an expression), aligned by phase correlation (sub-pixel, so
     breathing sway and drift cancel), and the signal is the largest 8x8-block mean absolute
     difference: an eye squeeze changes one or two blocks, not the mean.
   * *scene*: the whole-frame mean absolute LUV difference (a hand, the lamp, a cut; and the
     only signal when no face is found).

2. **A floor from the clip's own noise**: each signal is turned into a score
   ``(value - median) / sigma`` with ``sigma = max(1.4826 * MAD, 10% of the median, a tiny
   absolute floor)``; a frame changes when either score is at least ``noise_z``. Breathing
   sway and codec noise are what the median and MAD measure, so they set the bar instead
   of passing an absolute one.

3. **Persistence**: a change must hold for ``persist_s`` (a running minimum over that many
   frames): a codec refresh or a one-frame glitch does not. Each run of changed frames gives
   one keyframe, the first frame that reaches 80% of the run's peak (the new expression, not
   the half-way frame of a ramp). Strongest first, runs closer than ``min_gap_s`` to a kept
   one are dropped, at most ``max_keyframes``.

4. **A periodic sample**: whenever ``period_s`` has passed without a keyframe (from the clip's
   first frame on), that frame is taken too (reason ``"periodic"``), so no clip collapses to one
   frame and a slow change is still seen. If change and periodic keyframes together exceed
   ``max_keyframes`` the periodic ones are thinned evenly.

:class:`LiveKeyframes` runs the same signals causally on a live camera: statistics over the
trailing ``history_s``, a trailing persistence window, a keyframe as soon as a change has held
``persist_s``, and the same periodic rule. Frames are read twice rather than held in memory
(offline), so long or high-resolution clips cost no more memory than one frame.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from inference.detect import FaceDetector

#: Width the signals are computed at; full resolution adds cost, not signal.
ANALYSIS_WIDTH = 320
#: Used when a container reports no frame rate.
FALLBACK_FPS = 30.0
#: ~10 minutes at 30 fps; longer uploads are refused rather than tying up a worker.
DEFAULT_MAX_FRAMES = 18_000
ACCEPTED_SUFFIXES = (".mp4", ".mov", ".avi", ".m4v", ".mkv")
#: Defaults shared by the offline and the live selection.
DEFAULT_PERIOD_S = 5.0
DEFAULT_LAG_S = 0.4
DEFAULT_PERSIST_S = 0.12
DEFAULT_NOISE_Z = 4.5
DEFAULT_DETECT_EVERY_S = 1.0
#: Side of the normalised face patch and of its blocks (64 / 8 = an 8x8 grid).
FACE_PATCH = 64
FACE_BLOCK = 8
#: Share of the detector box added on every side, so brows and chin stay in the patch.
FACE_MARGIN = 0.0
#: Least sigma per signal. Scene (mean LUV, 0-255): a change must move the whole frame by ~1 unit,
#: so a codec refresh of a still clip (0.1 -> 0.6) is not one, while a hand, a lamp or a cut (20-100)
#: is. Face (normalised patch units): a perfectly still synthetic clip has no noise to measure.
MIN_SIGMA = {"scene": 0.15, "face": 0.02}
#: Reported when a keyframe is chosen for a change, to keep the clip sampled, or as the still fallback.
REASONS = ("change", "periodic", "still")


class UnreadableClip(ValueError):
    """The clip cannot be opened or decoded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Keyframe:
    """One selected frame: index in the clip, its timestamp, the RGB image and why it was chosen."""

    index: int
    time_s: float
    image: Image.Image
    reason: str = "change"


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
        self._faces: deque[np.ndarray | None] = deque(maxlen=lag_frames + 1)
        self._box: tuple[int, int, int, int] | None = None
        self._template: np.ndarray | None = None
        self._count = 0
        self._window = cv2.createHanningWindow((FACE_PATCH, FACE_PATCH), cv2.CV_64F)

    def update(self, frame_bgr: np.ndarray) -> tuple[float, float]:
        small = _analysis_frame(frame_bgr)
        luv = cv2.cvtColor(small, cv2.COLOR_BGR2LUV)
        if self.detector is not None:
            self._track(frame_bgr, small)
        self._count += 1
        self._scene.append(luv)
        self._faces.append(self._face_patch(frame_bgr) if self._box is not None else None)
        if len(self._scene) <= self.lag_frames:
            return math.nan, math.nan
        earlier = self._scene[0]
        scene = float(cv2.absdiff(luv, earlier).mean()) if earlier.shape == luv.shape else math.nan
        now, before = self._faces[-1], self._faces[0]
        face = _face_difference(before, now, self._window) if now is not None and before is not None else math.nan
        return scene, face

    def _track(self, frame_bgr: np.ndarray, small_bgr: np.ndarray) -> None:
        """Detector every ``detect_every`` frames; template matching near the last box in between.

        The box (full-resolution pixels, the detector's tight box: a margin would bring in background
        that does not move with the head) keeps its size while detections agree within 15% and its
        place while they agree within 10%: the detector's few-pixel jitter would otherwise read as
        the face moving, growing or shrinking.
        """
        grey = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY)
        scale = frame_bgr.shape[1] / small_bgr.shape[1]
        if self._count % self.detect_every == 0:
            from inference.detect import select_face

            rgb = Image.fromarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
            face = select_face(self.detector.detect(rgb), rgb.size, margin=FACE_MARGIN)
            if face is not None and face.w >= 16 and face.h >= 16:
                x, y, w, h = face.as_tuple()
                if self._box is not None:
                    old_x, old_y, old_w, old_h = self._box
                    if abs(w - old_w) <= 0.15 * old_w and abs(h - old_h) <= 0.15 * old_h:
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


def _face_difference(before: np.ndarray, now: np.ndarray, window: np.ndarray) -> float:
    """Largest block-mean absolute difference of two normalised face patches after alignment."""
    # Copies: OpenCV applies the window to its inputs in place.
    (dx, dy), _response = cv2.phaseCorrelate(before.copy(), now.copy(), window)
    if abs(dx) > FACE_PATCH / 4 or abs(dy) > FACE_PATCH / 4:  # no sensible alignment: compare as they are
        dx, dy = 0.0, 0.0
    shift = np.float64([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(
        before, shift, (FACE_PATCH, FACE_PATCH), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    diff = np.abs(now - moved)
    border = FACE_BLOCK // 2  # the warp's reflected border is not the face
    inner = diff[border:-border, border:-border]
    side = inner.shape[0] // FACE_BLOCK * FACE_BLOCK
    blocks = inner[:side, :side].reshape(side // FACE_BLOCK, FACE_BLOCK, side // FACE_BLOCK, FACE_BLOCK)
    return float(blocks.mean(axis=(1, 3)).max())


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


def pick_peaks(
    scores: np.ndarray,
    *,
    indices: list[int],
    fps: float,
    min_gap_s: float,
    max_keyframes: int,
    noise_z: float = DEFAULT_NOISE_Z,
    persist: int = 1,
) -> list[int]:
    """Frame indices of the changes in a score signal (noise units, ``scores[k]`` for ``indices[k]``).

    A change is a run of frames whose score stays at or above ``noise_z`` for ``persist``
    frames in a row (centred running minimum). Each run gives the first frame reaching 80% of
    its peak; runs are kept strongest first, at least ``min_gap_s`` apart, at most ``max_keyframes``.
    """
    z = np.asarray(scores, dtype=np.float64)
    if z.size == 0:
        return []
    z = np.where(np.isfinite(z), z, -np.inf)
    held = _running_min(z, persist)
    above = np.concatenate(([False], held >= noise_z, [False]))
    starts = np.flatnonzero(~above[:-1] & above[1:])
    ends = np.flatnonzero(above[:-1] & ~above[1:])  # exclusive
    left = (persist - 1) // 2
    right = persist - 1 - left
    runs: list[tuple[float, int]] = []
    for start, end in zip(starts, ends):
        lo, hi = max(0, start - left), min(z.size, end + right)
        peak = float(z[lo:hi].max())
        first = lo + int(np.flatnonzero(z[lo:hi] >= 0.8 * peak)[0])
        runs.append((peak, first))
    runs.sort(key=lambda run: run[0], reverse=True)
    min_gap_frames = min_gap_s * fps
    kept: list[int] = []
    for _peak, k in runs:
        frame = indices[k]
        if all(abs(frame - other) >= min_gap_frames for other in kept):
            kept.append(frame)
            if len(kept) >= max_keyframes:
                break
    return sorted(kept)


def _running_min(values: np.ndarray, width: int) -> np.ndarray:
    """Centred running minimum over ``width`` samples; -inf where the window leaves the signal."""
    if width <= 1:
        return values.copy()
    left = (width - 1) // 2
    padded = np.concatenate((np.full(left, -np.inf), values, np.full(width - 1 - left, -np.inf)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    return windows.min(axis=1)


def periodic_fill(
    indices: list[int], changes: list[int], *, fps: float, period_s: float | None, max_keyframes: int
) -> list[int]:
    """Frames to add so that no ``period_s`` passes without a keyframe (causal rule, from frame 0).

    Walks the analysed frames in order: a change keyframe restarts the clock; when ``period_s``
    has passed since the last keyframe (or at the first frame) that frame is taken. When change
    and periodic keyframes would exceed ``max_keyframes`` the periodic ones are thinned evenly.
    """
    if not period_s or period_s <= 0 or not indices:
        return []
    period_frames = period_s * fps
    change_set = set(changes)
    added: list[int] = []
    last: int | None = None
    for index in indices:
        if index in change_set:
            last = index
        elif last is None or index - last >= period_frames - 1e-9:
            added.append(index)
            last = index
    room = max_keyframes - len(changes)
    if room <= 0:
        return []
    if len(added) > room:
        added = [added[i] for i in np.unique(np.linspace(0, len(added) - 1, room).round().astype(int))]
    return added


def _resolve_detector(detector: FaceDetector | str | None) -> FaceDetector | None:
    if detector is None or detector == "none":
        return None
    if isinstance(detector, str):
        from inference.detect import get_detector

        return get_detector(detector)
    return detector


@dataclass(frozen=True)
class _Rates:
    """Frame counts of the time constants at the analysed frame rate."""

    step: int
    lag: int
    persist: int
    detect_every: int

    @classmethod
    def of(
        cls, *, fps: float, sample_fps: float | None, lag_s: float, persist_s: float, detect_every_s: float
    ) -> _Rates:
        step = 1 if not sample_fps or sample_fps >= fps else max(1, round(fps / sample_fps))
        rate = fps / step
        lag = max(1, round(lag_s * rate))
        return cls(
            step=step,
            lag=lag,
            persist=min(lag, max(1, round(persist_s * rate))),
            detect_every=max(1, round(detect_every_s * rate)),
        )


def select_keyframes(
    path: str | os.PathLike[str],
    *,
    min_gap_s: float = 0.5,
    max_keyframes: int = 20,
    sample_fps: float | None = None,
    period_s: float | None = DEFAULT_PERIOD_S,
    detector: FaceDetector | str | None = "retinaface",
    lag_s: float = DEFAULT_LAG_S,
    persist_s: float = DEFAULT_PERSIST_S,
    noise_z: float = DEFAULT_NOISE_Z,
    detect_every_s: float = DEFAULT_DETECT_EVERY_S,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> list[Keyframe]:
    """Keyframes of the clip at ``path`` (mp4/mov/avi through OpenCV's FFmpeg backend); see the module doc.

    ``sample_fps`` analyses only that many frames per second (default: every frame).
    ``period_s`` (None or 0: off) is the periodic sample. ``detector``: a face detector, a
    detector name for :func:`inference.detect.get_detector`, or None for the scene signal only.
    Raises :class:`UnreadableClip`.
    """
    if max_keyframes < 1:
        raise ValueError("max_keyframes must be >= 1")
    if noise_z <= 0 or lag_s <= 0:
        raise ValueError("noise_z and lag_s must be > 0")
    indices, scores, fps, rates = _change_scores(
        Path(path),
        sample_fps=sample_fps,
        max_frames=max_frames,
        detector=_resolve_detector(detector),
        lag_s=lag_s,
        persist_s=persist_s,
        detect_every_s=detect_every_s,
    )
    changes = pick_peaks(
        scores,
        indices=indices,
        fps=fps,
        min_gap_s=min_gap_s,
        max_keyframes=max_keyframes,
        noise_z=noise_z,
        persist=rates.persist,
    )
    reasons = dict.fromkeys(changes, "change")
    reasons.update(
        dict.fromkeys(
            periodic_fill(indices, changes, fps=fps, period_s=period_s, max_keyframes=max_keyframes), "periodic"
        )
    )
    if not reasons:
        reasons = {indices[0]: "still"}
    images = _read_frames(Path(path), set(reasons))
    return [
        Keyframe(index=i, time_s=round(i / fps, 4), image=images[i], reason=reasons[i])
        for i in sorted(reasons)
        if i in images
    ]


def keyframes_from_bytes(data: bytes, suffix: str = ".mp4", **options: object) -> list[Keyframe]:
    """:func:`select_keyframes` for an uploaded clip held in memory (via a temp file); same options."""
    if not data:
        raise UnreadableClip("empty clip")
    suffix = suffix if suffix.startswith(".") else f".{suffix}"
    if suffix.lower() not in ACCEPTED_SUFFIXES:
        raise UnreadableClip(f"clip type {suffix} is not accepted ({', '.join(ACCEPTED_SUFFIXES)})")
    with tempfile.TemporaryDirectory(prefix="neopain-clip-") as folder:
        clip = Path(folder) / f"clip{suffix.lower()}"
        clip.write_bytes(data)
        return select_keyframes(clip, **options)  # type: ignore[arg-type]


def combined_scores(scene: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Per frame, the larger of the two signals' noise scores (a signal that is nan counts as absent)."""
    z_scene = noise_scores(scene, min_sigma=MIN_SIGMA["scene"])
    z_face = noise_scores(face, min_sigma=MIN_SIGMA["face"])
    return np.fmax(z_scene, z_face)


class LiveKeyframes:
    """Keyframes of a live camera, decided frame by frame (causal): the same signals and rules.

    ``push(frame_bgr)`` returns a :class:`Keyframe` when that frame is one, else None. The noise
    floor comes from the trailing ``history_s`` of the stream; no change keyframe is taken
    before ``warmup_s`` of history (the periodic sample, which starts with the first frame,
    covers the start). A change is reported once it has held ``persist_s``, so a live keyframe
    comes at most that much later than the offline one.
    """

    def __init__(
        self,
        *,
        fps: float,
        detector: FaceDetector | str | None = "retinaface",
        period_s: float | None = DEFAULT_PERIOD_S,
        min_gap_s: float = 0.5,
        lag_s: float = DEFAULT_LAG_S,
        persist_s: float = DEFAULT_PERSIST_S,
        noise_z: float = DEFAULT_NOISE_Z,
        detect_every_s: float = DEFAULT_DETECT_EVERY_S,
        history_s: float = 30.0,
        warmup_s: float = 3.0,
    ) -> None:
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError("fps must be > 0")
        self.fps = fps
        self.period_s = period_s
        self.min_gap_s = min_gap_s
        self.noise_z = noise_z
        self.rates = _Rates.of(
            fps=fps, sample_fps=None, lag_s=lag_s, persist_s=persist_s, detect_every_s=detect_every_s
        )
        self.signal = ChangeSignal(
            lag_frames=self.rates.lag, detector=_resolve_detector(detector), detect_every=self.rates.detect_every
        )
        history = max(int(history_s * fps), 2)
        self._scene: deque[float] = deque(maxlen=history)
        self._face: deque[float] = deque(maxlen=history)
        self._recent: deque[float] = deque(maxlen=self.rates.persist)
        self._warmup = int(warmup_s * fps)
        self._index = -1
        self._last: int | None = None
        self._last_change: int | None = None
        self._in_change = False

    def push(self, frame_bgr: np.ndarray) -> Keyframe | None:
        self._index += 1
        scene, face = self.signal.update(frame_bgr)
        self._scene.append(scene)
        self._face.append(face)
        score = float(combined_scores(np.asarray(self._scene), np.asarray(self._face))[-1])
        self._recent.append(score if math.isfinite(score) else -math.inf)
        held = len(self._recent) == self._recent.maxlen and min(self._recent) >= self.noise_z
        reason = None
        if held and not self._in_change and self._index >= self._warmup:
            gap_ok = self._last_change is None or self._index - self._last_change >= self.min_gap_s * self.fps
            if gap_ok:
                reason = "change"
                self._last_change = self._index
        self._in_change = held
        if (
            reason is None
            and self.period_s
            and (self._last is None or self._index - self._last >= self.period_s * self.fps - 1e-9)
        ):
            reason = "periodic"
        if reason is None:
            return None
        self._last = self._index
        image = Image.fromarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        return Keyframe(index=self._index, time_s=round(self._index / self.fps, 4), image=image, reason=reason)


def sniff_container(head: bytes) -> str | None:
    """Container name from a file's first bytes (``mp4``, ``avi``, ``mkv``) or ``None``.

    OpenCV happily "opens" a JPEG as a one-frame image sequence; checking the magic
    bytes keeps stills and junk out of the video path with a clear reason.
    """
    if len(head) >= 12 and head[4:8] in {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}:
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "mkv"
    return None


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise UnreadableClip(f"clip not found: {path}")
    if path.stat().st_size == 0:
        raise UnreadableClip("empty clip")
    with open(path, "rb") as handle:
        if sniff_container(handle.read(16)) is None:
            raise UnreadableClip(f"{path.name} is not an MP4/MOV, AVI or MKV video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise UnreadableClip(f"cannot open {path.name} as a video")
    return capture


def _change_scores(
    path: Path,
    *,
    sample_fps: float | None,
    max_frames: int,
    detector: FaceDetector | None,
    lag_s: float,
    persist_s: float,
    detect_every_s: float,
) -> tuple[list[int], np.ndarray, float, _Rates]:
    """(analysed frame indices, their combined change scores, fps, frame counts of the time constants)."""
    capture = _open(path)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 0:
            fps = FALLBACK_FPS
        rates = _Rates.of(
            fps=fps, sample_fps=sample_fps, lag_s=lag_s, persist_s=persist_s, detect_every_s=detect_every_s
        )
        signal = ChangeSignal(lag_frames=rates.lag, detector=detector, detect_every=rates.detect_every)
        indices: list[int] = []
        scene: list[float] = []
        face: list[float] = []
        index = 0
        while True:
            if index >= max_frames:
                raise UnreadableClip(f"clip is longer than {max_frames} frames")
            if not capture.grab():
                break
            if index % rates.step == 0:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    break
                values = signal.update(frame)
                scene.append(values[0])
                face.append(values[1])
                indices.append(index)
            index += 1
    finally:
        capture.release()
    if not indices:
        raise UnreadableClip(f"no decodable frames in {path.name}")
    return indices, combined_scores(np.asarray(scene), np.asarray(face)), fps, rates


def _analysis_frame(frame_bgr: np.ndarray) -> np.ndarray:
    height, width = frame_bgr.shape[:2]
    if width > ANALYSIS_WIDTH:
        new_h = max(1, round(height * ANALYSIS_WIDTH / width))
        frame_bgr = cv2.resize(frame_bgr, (ANALYSIS_WIDTH, new_h), interpolation=cv2.INTER_AREA)
    return frame_bgr


def _read_frames(path: Path, wanted: set[int]) -> dict[int, Image.Image]:
    """Second pass: decode only the chosen frames (sequential grab is exact, seeking is not)."""
    capture = _open(path)
    images: dict[int, Image.Image] = {}
    try:
        last = max(wanted)
        for index in range(last + 1):
            if not capture.grab():
                break
            if index in wanted:
                ok, frame = capture.retrieve()
                if ok and frame is not None:
                    images[index] = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    return images
