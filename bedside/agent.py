"""The bedside agent: camera -> online keyframes -> spool -> NeoPain, without losing a keyframe.

Two threads share the spool folder. The capture thread reads the source, picks keyframes with
:class:`inference.keyframes.LiveKeyframes` (face-region change against the stream's own noise)
plus a heartbeat keyframe whenever ``max_interval_s`` of capture time passed without one, and
writes each to the spool before anything else. The sender thread sends the spool oldest first,
deletes a keyframe only after a 2xx, moves one the server refuses (a 4xx other than 408/429) to
``rejected/``, and retries everything else with exponential backoff and jitter, honouring
``Retry-After``. The server answers a re-upload of the same image for the same neonate with the
existing frame, so a retry after a lost answer never stores a keyframe twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from bedside.source import Capture, CapturedFrame, Source, SourceError
from bedside.spool import DEFAULT_MAX_BYTES, Spool
from bedside.uplink import Uplink, backoff_seconds

logger = logging.getLogger("bedside")

#: Exit codes of ``python -m bedside``.
EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_NOT_DRAINED = 3
#: Device health: a heartbeat (version, spool backlog) this often, idle or not.
HEARTBEAT_S = 60.0
JPEG_QUALITY = 90


@dataclass(frozen=True)
class AgentConfig:
    server: str
    token: str
    neonate: str
    source: Source
    spool_dir: Path
    once: bool = False
    drain_timeout_s: float = 120.0
    max_interval_s: float = 30.0
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    detector: str = "retinaface"
    heartbeat_s: float = HEARTBEAT_S


@dataclass
class Counters:
    """What the summary on exit reports."""

    read: int = 0
    keyframes: int = 0
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)


def detector_load(name: str):
    """The face detector for the face-region signal; None for ``none`` (scene signal and heartbeats only)."""
    if name == "none":
        return None
    try:
        from inference.detect import get_detector
    except ImportError as exc:
        raise SourceError(
            f"--detector {name} needs the inference package's detector dependencies ({exc}); "
            "install requirements.txt, or run with --detector none (no face-region signal)"
        ) from exc
    return get_detector(name)


class Agent:
    def __init__(self, config: AgentConfig, *, uplink: Uplink | None = None) -> None:
        self.config = config
        self.uplink = uplink or Uplink(server=config.server, token=config.token)
        self.spool = Spool(config.spool_dir, max_bytes=config.spool_max_bytes)
        self.counters = Counters()
        self.stopping = threading.Event()
        self.capture_done = threading.Event()
        self.spooled_event = threading.Event()
        #: Held while a keyframe is being written: a signal lets the write finish before the exit.
        self.write_lock = threading.Lock()
        self.closed = False
        self.capture_error: str | None = None
        self._heartbeat_unsupported = False

    # --- capture -----------------------------------------------------------------------------

    def _open(self, attempt: int) -> Capture | None:
        try:
            return Capture(self.config.source)
        except SourceError as exc:
            if not self.config.source.live or self.config.once:
                self.capture_error = str(exc)
                return None
            wait = backoff_seconds(attempt)
            logger.warning("%s; trying again in %.1f s", exc, wait)
            self.stopping.wait(wait)
            return None

    def capture_loop(self, detector) -> None:
        from inference.live_keyframes import LiveKeyframes

        attempt = 0
        try:
            while not self.stopping.is_set():
                attempt += 1
                capture = self._open(attempt)
                if capture is None:
                    if self.capture_error:
                        return
                    continue
                attempt = 0
                logger.info("reading %s at %.1f fps", self.config.source.describe(), capture.fps)
                live = LiveKeyframes(fps=capture.fps, detector=detector, period_s=None)
                last_keyframe_s: float | None = None
                try:
                    for frame in capture.frames():
                        self.counters.add("read")
                        chosen = live.push(frame.image)
                        reason = chosen.reason if chosen is not None else None
                        if reason is None and (
                            last_keyframe_s is None or frame.time_s - last_keyframe_s >= self.config.max_interval_s
                        ):
                            reason = "heartbeat"
                        if reason is not None:
                            last_keyframe_s = frame.time_s
                            self._keyframe_store(frame, reason)
                        if self.stopping.is_set():
                            return
                finally:
                    capture.close()
                if not self.config.source.live or self.config.once:
                    return
                logger.warning("%s ended; reopening", self.config.source.describe())
        except Exception as exc:  # a decoder or detector failure must still let the spool drain
            logger.exception("capture stopped")
            self.capture_error = f"{type(exc).__name__}: {exc}"
        finally:
            self.capture_done.set()
            self.spooled_event.set()

    def _keyframe_store(self, frame: CapturedFrame, reason: str) -> None:
        ok, encoded = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            logger.error("frame %d: JPEG encoding failed; not spooled", frame.index)
            return
        with self.write_lock:
            if self.closed:
                logger.info("frame %d read after the stop: not spooled", frame.index)
                return
            try:
                path = self.spool.add(
                    neonate=self.config.neonate, captured_at=frame.captured_at, reason=reason, jpeg=encoded.tobytes()
                )
            except OSError as exc:  # a full or failing disk: keep watching, the next keyframe may fit
                logger.error("keyframe %s (%s) NOT spooled: %s", frame.captured_at.isoformat(), reason, exc)
                return
        self.counters.add("keyframes")
        if path is None:
            logger.info("keyframe %s (%s): already spooled", frame.captured_at.isoformat(), reason)
        else:
            logger.info(
                "keyframe spooled %s reason=%s captured_at=%s t=%.2fs",
                path.name,
                reason,
                frame.captured_at.isoformat(),
                frame.time_s,
            )
        self.spooled_event.set()

    # --- sending -----------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        if self._heartbeat_unsupported:
            return
        answer = self.uplink.heartbeat_send(neonate=self.config.neonate, backlog=self.spool.backlog())
        if answer.status == 404:
            self._heartbeat_unsupported = True
            logger.warning("server has no device heartbeat endpoint (404): not sending heartbeats")
        elif not answer.accepted:
            logger.warning("heartbeat: %s", answer.describe())

    def send_loop(self) -> None:
        attempt = 0
        next_heartbeat = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = time.monotonic() + self.config.heartbeat_s
            pending = self.spool.pending()
            if not pending:
                self.spooled_event.clear()
                if not self.spool.pending():
                    self.spooled_event.wait(max(0.0, min(1.0, next_heartbeat - time.monotonic())))
                continue
            entry = self.spool.read(pending[0])
            if entry is None:
                continue
            answer = self.uplink.keyframe_send(entry)
            if answer.accepted:
                attempt = 0
                self.spool.remove(entry)
                duplicate = answer.duplicate
                self.counters.add("duplicates" if duplicate else "sent")
                logger.info(
                    "keyframe sent %s -> HTTP %d%s", entry.name, answer.status, " (duplicate)" if duplicate else ""
                )
            elif answer.transient:
                attempt += 1
                wait = backoff_seconds(attempt, retry_after_s=answer.retry_after_s)
                log = logger.error if answer.status in (401, 403) else logger.warning
                log("keyframe %s not sent: %s; retry %d in %.1f s", entry.name, answer.describe(), attempt, wait)
                self.stopping.wait(wait)
            else:
                attempt = 0
                target = self.spool.reject(entry, status=answer.status, answer=answer.body)
                self.counters.add("rejected")
                logger.error("keyframe rejected %s: %s; kept in %s", entry.name, answer.describe(), target.parent)

    # --- the whole run -----------------------------------------------------------------------

    def _on_signal(self, signum, _frame) -> None:
        logger.info("%s: finishing the current write and stopping", signal.Signals(signum).name)
        self.stopping.set()
        self.spooled_event.set()

    def run(self) -> int:
        config = self.config
        backlog = self.spool.backlog()
        logger.info(
            "bedside agent: neonate %s, source %s, server %s, spool %s (%d keyframes waiting, sent first)",
            config.neonate,
            config.source.describe(),
            config.server,
            config.spool_dir,
            backlog,
        )
        try:
            detector = detector_load(config.detector)
        except SourceError as exc:
            logger.error("%s", exc)
            return EXIT_CONFIG
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._run(detector)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _run(self, detector) -> int:
        config = self.config
        sender = threading.Thread(target=self.send_loop, name="bedside-send", daemon=True)
        capturer = threading.Thread(target=self.capture_loop, args=(detector,), name="bedside-capture", daemon=True)
        sender.start()
        capturer.start()
        code = EXIT_OK
        deadline: float | None = None
        while not self.stopping.is_set():
            if self.capture_done.is_set() and config.once:
                if deadline is None:
                    deadline = time.monotonic() + config.drain_timeout_s
                if not self.spool.pending():
                    break
                if time.monotonic() >= deadline:
                    logger.warning("drain timeout of %g s passed with keyframes still spooled", config.drain_timeout_s)
                    code = EXIT_NOT_DRAINED
                    break
            self.stopping.wait(0.2)
        self.stopping.set()
        self.spooled_event.set()
        capturer.join(timeout=5)
        sender.join(timeout=self.uplink.timeout_s + 5)
        with self.write_lock:  # a keyframe being written is completed first; none is started after
            self.closed = True
            left = self.spool.backlog()
        if code == EXIT_NOT_DRAINED and left == 0:
            code = EXIT_OK  # the last send finished after the deadline was seen
        if self.capture_error and code == EXIT_OK:
            logger.error("source: %s", self.capture_error)
            code = EXIT_CONFIG if self.counters.read == 0 else code
        self._summary(left)
        return code

    def _summary(self, left: int) -> None:
        c = self.counters
        logger.info(
            "summary: read=%d keyframes=%d sent=%d duplicates=%d spooled=%d rejected=%d evicted=%d",
            c.read,
            c.keyframes,
            c.sent,
            c.duplicates,
            left,
            c.rejected,
            self.spool.evicted,
        )
