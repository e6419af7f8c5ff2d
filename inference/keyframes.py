"""Keyframes from a clip, as the paper extracted them from its videos.

Paper: "keyframes ... based on inter-frame differences in CIELUV color space. A keyframe
is identified if there is a local maximum of inter-frame difference" (after A. Walia,
KeyFramesExtraction). Here:

1. Each sampled frame is downscaled (the difference signal does not need full
   resolution) and converted to CIELUV; the signal is the mean absolute LUV difference
   per pixel between consecutive sampled frames.
2. The signal is smoothed with a short Hann window and every local maximum is a
   candidate keyframe (the frame just after the change).
3. Candidates are kept if they rise clearly above the clip's noise floor (sensor noise
   and compression make tiny maxima everywhere): at least ``min_peak`` above the median
   and at least ``rel_peak`` of the strongest change.
4. Strongest first, candidates closer than ``min_gap_s`` to a kept one are dropped; at
   most ``max_keyframes`` are kept; results are returned in time order.

A clip without any qualifying change (a still scene) yields its first frame, so every
readable clip can be assessed. Frames are read twice rather than held in memory, so
long or high-resolution clips cost no more memory than one frame.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

#: Width the difference signal is computed at; full resolution adds cost, not signal.
ANALYSIS_WIDTH = 320
#: Used when a container reports no frame rate.
FALLBACK_FPS = 30.0
#: ~10 minutes at 30 fps; longer uploads are refused rather than tying up a worker.
DEFAULT_MAX_FRAMES = 18_000
ACCEPTED_SUFFIXES = (".mp4", ".mov", ".avi", ".m4v", ".mkv")


class UnreadableClip(ValueError):
    """The clip cannot be opened or decoded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Keyframe:
    """One selected frame: index in the clip, its timestamp and the RGB image."""

    index: int
    time_s: float
    image: Image.Image


def select_keyframes(
    path: str | os.PathLike[str],
    *,
    min_gap_s: float = 0.5,
    max_keyframes: int = 20,
    sample_fps: float | None = None,
    smoothing: int = 3,
    min_peak: float = 1.0,
    rel_peak: float = 0.1,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int | None = None,
) -> list[Keyframe]:
    """Keyframes of the clip at ``path`` (mp4/mov/avi through OpenCV's FFmpeg backend).

    ``sample_fps`` analyses only that many frames per second (default: every frame).
    ``min_peak`` is in mean-absolute-LUV units per pixel (0-255 scale). ``max_pixels`` refuses a
    clip whose frames are larger (width x height), read from the stream header before decoding.
    Raises :class:`UnreadableClip`.
    """
    if max_keyframes < 1:
        raise ValueError("max_keyframes must be >= 1")
    indices, signal, fps = _difference_signal(
        Path(path), sample_fps=sample_fps, max_frames=max_frames, max_pixels=max_pixels
    )
    chosen = pick_peaks(
        signal,
        indices=indices,
        fps=fps,
        min_gap_s=min_gap_s,
        max_keyframes=max_keyframes,
        smoothing=smoothing,
        min_peak=min_peak,
        rel_peak=rel_peak,
    )
    if not chosen:
        chosen = [indices[0]]
    images = _read_frames(Path(path), set(chosen))
    return [Keyframe(index=i, time_s=round(i / fps, 4), image=images[i]) for i in sorted(chosen) if i in images]


def keyframes_from_bytes(
    data: bytes,
    suffix: str = ".mp4",
    *,
    min_gap_s: float = 0.5,
    max_keyframes: int = 20,
    sample_fps: float | None = None,
    max_pixels: int | None = None,
) -> list[Keyframe]:
    """:func:`select_keyframes` for an uploaded clip held in memory (via a temp file)."""
    if not data:
        raise UnreadableClip("empty clip")
    suffix = suffix if suffix.startswith(".") else f".{suffix}"
    if suffix.lower() not in ACCEPTED_SUFFIXES:
        raise UnreadableClip(f"clip type {suffix} is not accepted ({', '.join(ACCEPTED_SUFFIXES)})")
    with tempfile.TemporaryDirectory(prefix="neopain-clip-") as folder:
        clip = Path(folder) / f"clip{suffix.lower()}"
        clip.write_bytes(data)
        return select_keyframes(
            clip, min_gap_s=min_gap_s, max_keyframes=max_keyframes, sample_fps=sample_fps, max_pixels=max_pixels
        )


def pick_peaks(
    signal: np.ndarray,
    *,
    indices: list[int],
    fps: float,
    min_gap_s: float,
    max_keyframes: int,
    smoothing: int = 3,
    min_peak: float = 1.0,
    rel_peak: float = 0.1,
) -> list[int]:
    """Frame indices of the significant local maxima of a difference signal (see module doc).

    ``signal[k]`` is the difference between sampled frames ``indices[k]`` and
    ``indices[k + 1]``; a peak there selects ``indices[k + 1]``.
    """
    values = np.asarray(signal, dtype=np.float64)
    if values.size == 0:
        return []
    smooth = _smooth(values, smoothing)
    padded = np.concatenate([[-np.inf], smooth, [-np.inf]])
    # Strict rise on the left, ">=" on the right: a flat-topped peak counts once, at its start.
    is_max = (padded[1:-1] > padded[:-2]) & (padded[1:-1] >= padded[2:])
    floor = float(np.median(smooth))
    strongest = float(smooth.max()) - floor
    threshold = max(min_peak, rel_peak * strongest)
    candidates = [k for k in np.flatnonzero(is_max) if smooth[k] - floor >= threshold]
    candidates.sort(key=lambda k: smooth[k], reverse=True)
    min_gap_frames = min_gap_s * fps
    kept: list[int] = []
    for k in candidates:
        frame = indices[k + 1]
        if all(abs(frame - other) >= min_gap_frames for other in kept):
            kept.append(frame)
            if len(kept) >= max_keyframes:
                break
    return sorted(kept)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Hann-window moving average (``window`` < 3 or a short signal: unchanged)."""
    if window < 3 or values.size < window:
        return values
    window |= 1  # odd, so the smoothed peak stays on the frame that changed
    kernel = np.hanning(window + 2)[1:-1]  # drop hanning's zero end-points
    kernel /= kernel.sum()
    pad = window // 2
    extended = np.pad(values, pad, mode="edge")
    return np.convolve(extended, kernel, mode="valid")[: values.size]


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


def _difference_signal(
    path: Path, *, sample_fps: float | None, max_frames: int, max_pixels: int | None = None
) -> tuple[list[int], np.ndarray, float]:
    """(sampled frame indices, LUV difference between consecutive samples, fps)."""
    capture = _open(path)
    try:
        # The header's size first (nothing decoded yet); each decoded frame is checked too.
        _check_pixels(
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0), max_pixels
        )
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 0:
            fps = FALLBACK_FPS
        step = 1 if not sample_fps or sample_fps >= fps else max(1, round(fps / sample_fps))
        indices: list[int] = []
        diffs: list[float] = []
        previous: np.ndarray | None = None
        index = 0
        while True:
            if index >= max_frames:
                raise UnreadableClip(f"clip is longer than {max_frames} frames")
            grabbed = capture.grab()
            if not grabbed:
                break
            if index % step == 0:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    break
                _check_pixels(frame.shape[1], frame.shape[0], max_pixels)
                luv = _analysis_luv(frame)
                if previous is not None and previous.shape == luv.shape:
                    diffs.append(float(cv2.absdiff(luv, previous).mean()))
                elif previous is not None:
                    diffs.append(0.0)
                indices.append(index)
                previous = luv
            index += 1
    finally:
        capture.release()
    if not indices:
        raise UnreadableClip(f"no decodable frames in {path.name}")
    return indices, np.asarray(diffs, dtype=np.float64), fps


def _analysis_luv(frame_bgr: np.ndarray) -> np.ndarray:
    height, width = frame_bgr.shape[:2]
    if width > ANALYSIS_WIDTH:
        new_h = max(1, round(height * ANALYSIS_WIDTH / width))
        frame_bgr = cv2.resize(frame_bgr, (ANALYSIS_WIDTH, new_h), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2LUV)


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
