"""Where frames come from: a video file, a local camera index or a stream URL OpenCV reads."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger("bedside.source")

#: A live source that reports no usable frame rate (many MJPEG servers report 0 or 1000) is taken as this.
FALLBACK_FPS = 15.0


class SourceError(RuntimeError):
    """The source cannot be opened; the message says which and why."""


@dataclass(frozen=True)
class Source:
    """A parsed ``--source``: ``kind`` is ``file``, ``camera`` or ``stream``."""

    kind: str
    target: str | int

    @classmethod
    def parse(cls, value: str) -> Source:
        value = value.strip()
        if not value:
            raise SourceError("--source is empty: give a video file, a camera index (0) or a stream URL")
        if value.isdigit():
            return cls("camera", int(value))
        if "://" in value:
            return cls("stream", value)
        if not Path(value).is_file():
            raise SourceError(f"--source {value!r} is not a file, a camera index or a URL (scheme://...)")
        return cls("file", value)

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def describe(self) -> str:
        return f"{self.kind} {self.target}"


@dataclass(frozen=True)
class CapturedFrame:
    index: int
    captured_at: datetime
    #: Seconds since the first frame on the capture clock (the file's own time for a file).
    time_s: float
    image: np.ndarray


class Capture:
    """An opened source; :meth:`frames` yields frames with their capture time until it ends.

    Capture time: a live source's frame is stamped with the wall clock when it is read; a file's
    frame with the file's recording time (its modification time is taken as the end of recording,
    so frame ``i`` is at ``mtime - duration + i / fps``). A file replayed therefore yields the
    same keyframes with the same times, and the spool and the server store them once.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self.capture = cv2.VideoCapture(source.target)
        if not self.capture.isOpened():
            self.capture.release()
            raise SourceError(f"OpenCV cannot open {source.describe()}")
        reported = self.capture.get(cv2.CAP_PROP_FPS)
        if math.isfinite(reported) and 1.0 <= reported <= 120.0:
            self.fps = float(reported)
        else:
            self.fps = FALLBACK_FPS
            logger.warning("source reports a frame rate of %r: taking %.0f fps", reported, FALLBACK_FPS)
        self._file_start: datetime | None = None
        if source.kind == "file":
            count = max(0.0, self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
            ended = datetime.fromtimestamp(Path(str(source.target)).stat().st_mtime, UTC)
            self._file_start = ended - timedelta(seconds=count / self.fps)

    def frames(self) -> Iterator[CapturedFrame]:
        index = 0
        started = time.time()
        while True:
            ok, image = self.capture.read()
            if not ok or image is None:
                return
            if self._file_start is not None:
                time_s = index / self.fps
                captured_at = self._file_start + timedelta(seconds=time_s)
            else:
                now = time.time()
                time_s = now - started
                captured_at = datetime.fromtimestamp(now, UTC)
            yield CapturedFrame(index=index, captured_at=captured_at, time_s=time_s, image=image)
            index += 1

    def close(self) -> None:
        self.capture.release()
