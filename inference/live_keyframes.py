"""Keyframes of a live camera, decided frame by frame: the signals and rules of :mod:`inference.keyframes`.

The bedside agent feeds each frame to :meth:`LiveKeyframes.push`; :func:`live_keyframes_replay`
feeds a recorded clip the same way (tests, benchmarks, a stored stream).
"""

from __future__ import annotations

import math
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from inference.keyframe_signals import ChangeSignal, combined_scores
from inference.keyframes import (
    DEFAULT_DETECT_EVERY_S,
    DEFAULT_LAG_S,
    DEFAULT_NOISE_Z,
    DEFAULT_PERIOD_S,
    DEFAULT_PERSIST_S,
    FALLBACK_FPS,
    Keyframe,
    _open,
    _Rates,
    _resolve_detector,
)

if TYPE_CHECKING:
    from inference.detect import FaceDetector


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


def live_keyframes_replay(path: str | os.PathLike[str], **options: object) -> list[Keyframe]:
    """What :class:`LiveKeyframes` (``options``) emits for the clip at ``path`` fed frame by frame, as a camera would."""
    capture = _open(Path(path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        live = LiveKeyframes(fps=fps if math.isfinite(fps) and fps > 0 else FALLBACK_FPS, **options)  # type: ignore[arg-type]
        emitted = []
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            keyframe = live.push(frame)
            if keyframe is not None:
                emitted.append(keyframe)
    finally:
        capture.release()
    return emitted
