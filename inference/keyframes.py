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

:class:`inference.live_keyframes.LiveKeyframes` runs the same signals causally on a live camera: statistics over the
trailing ``history_s``, a trailing persistence window, a keyframe as soon as a change has held
``persist_s``, and the same periodic rule. Frames are read twice rather than held in memory
(offline), so long or high-resolution clips cost no more memory than one frame.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from inference.keyframe_signals import (
    ANALYSIS_WIDTH,
    FACE_BLOCK,
    FACE_MARGIN,
    FACE_PATCH,
    MIN_SIGMA,
    ChangeSignal,
    combined_scores,
    noise_scores,
)

if TYPE_CHECKING:
    from inference.detect import FaceDetector

__all__ = [
    "ANALYSIS_WIDTH",
    "FACE_BLOCK",
    "FACE_MARGIN",
    "FACE_PATCH",
    "MIN_SIGMA",
    "ChangeSignal",
    "Keyframe",
    "UnreadableClip",
    "combined_scores",
    "keyframes_from_bytes",
    "noise_scores",
    "periodic_fill",
    "pick_peaks",
    "select_keyframes",
    "sniff_container",
]

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


def pick_peaks(
    scores: np.ndarray,
    *,
    indices: list[int],
    fps: float,
    min_gap_s: float,
    max_keyframes: int,
    noise_z: float = DEFAULT_NOISE_Z,
    persist: int = 1,
    settle: int | None = None,
    merge_gap: int = 0,
) -> list[int]:
    """Frame indices of the changes in a score signal (noise units, ``scores[k]`` for ``indices[k]``).

    A change is a run of frames whose score stays at or above ``noise_z`` for ``persist``
    frames in a row (centred running minimum). Each run gives the first frame reaching 80% of
    its peak within its first ``settle`` frames (default: the whole run; the lag, for a lagged
    signal: a hand that stays a while is keyed when it arrives, not when it is most visible);
    runs are kept strongest first, at least ``min_gap_s`` apart, at most ``max_keyframes``.
    Runs fewer than ``merge_gap`` frames apart are one change (a ramp whose score dips mid-way).
    """
    z = np.asarray(scores, dtype=np.float64)
    if z.size == 0:
        return []
    z = np.where(np.isfinite(z), z, -np.inf)
    held = _running_min(z, persist)
    above = np.concatenate(([False], held >= noise_z, [False]))
    starts = np.flatnonzero(~above[:-1] & above[1:])
    ends = np.flatnonzero(above[:-1] & ~above[1:])  # exclusive
    if merge_gap > 0 and starts.size > 1:
        joined = starts[1:] - ends[:-1] < merge_gap
        starts = np.concatenate((starts[:1], starts[1:][~joined]))
        ends = np.concatenate((ends[:-1][~joined], ends[-1:]))
    left = (persist - 1) // 2
    right = persist - 1 - left
    runs: list[tuple[float, int]] = []
    for start, end in zip(starts, ends):
        lo, hi = max(0, start - left), min(z.size, end + right)
        if settle:
            hi = min(hi, lo + settle)
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
    max_pixels: int | None = None,
) -> list[Keyframe]:
    """Keyframes of the clip at ``path`` (mp4/mov/avi through OpenCV's FFmpeg backend); see the module doc.

    ``sample_fps`` analyses only that many frames per second (default: every frame).
    ``period_s`` (None or 0: off) is the periodic sample. ``detector``: a face detector, a
    detector name for :func:`inference.detect.get_detector`, or None for the scene signal only.
    ``max_pixels`` refuses a clip whose frames are larger (width x height), read from the stream
    header before decoding. Raises :class:`UnreadableClip`.
    """
    if max_keyframes < 1:
        raise ValueError("max_keyframes must be >= 1")
    if noise_z <= 0 or lag_s <= 0:
        raise ValueError("noise_z and lag_s must be > 0")
    indices, scores, fps, rates = _change_scores(
        Path(path),
        sample_fps=sample_fps,
        max_frames=max_frames,
        max_pixels=max_pixels,
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
        settle=rates.lag + rates.persist,
        merge_gap=rates.lag,
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


def _check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise UnreadableClip(
            f"clip frames are {width}x{height} = {width * height} pixels, over the cap of {max_pixels}"
        )


def _change_scores(
    path: Path,
    *,
    sample_fps: float | None,
    max_frames: int,
    max_pixels: int | None = None,
    detector: FaceDetector | None,
    lag_s: float,
    persist_s: float,
    detect_every_s: float,
) -> tuple[list[int], np.ndarray, float, _Rates]:
    """(analysed frame indices, their combined change scores, fps, frame counts of the time constants)."""
    capture = _open(path)
    try:
        # The header's size first (nothing decoded yet); each decoded frame is checked too.
        _check_pixels(
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0), max_pixels
        )
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
                _check_pixels(frame.shape[1], frame.shape[0], max_pixels)
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
