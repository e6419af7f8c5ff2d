"""The agent's on-disk spool: every keyframe is here, durably, before it is sent.

One keyframe is one file ``<capture time in µs>-<sha256 of the JPEG, 16 hex>.kf``: a JSON header
line (neonate, captured_at, reason, sha256, size) then the JPEG bytes. It is written under a
temporary name, fsynced, renamed into place and the folder fsynced, so after a power cut or a
SIGKILL a keyframe is either complete or absent; a leftover temporary file is removed on start and
never sent. The header's sha256 is checked on every read: a file damaged on disk is moved to
``corrupt/`` rather than sent. Names sort oldest first; the same keyframe captured again (a file
source replayed) has the same name and is stored once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger("bedside.spool")

SUFFIX = ".kf"
TEMP_PREFIX = ".tmp-"
#: 2 GiB: about 20 000 keyframes of a 640x480 camera (~100 kB each), days of an outage at one a minute.
DEFAULT_MAX_BYTES = 2 * 1024**3


class DamagedEntry(ValueError):
    """A spool file whose header or JPEG does not check out."""


@dataclass(frozen=True)
class SpoolEntry:
    """One spooled keyframe: where it lies and what it carries."""

    path: Path
    neonate: str
    captured_at: datetime
    reason: str
    jpeg: bytes

    @property
    def name(self) -> str:
        return self.path.name


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_durably(path: Path, data: bytes) -> None:
    """Temporary name in the same folder, fsync, rename, fsync the folder: all or nothing on disk."""
    temporary = path.with_name(f"{TEMP_PREFIX}{path.name}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_folder(path.parent)


def entry_read(path: Path) -> SpoolEntry:
    """The keyframe in a spool file; :class:`DamagedEntry` when it does not check out."""
    raw = path.read_bytes()
    header_line, newline, jpeg = raw.partition(b"\n")
    try:
        if not newline:
            raise ValueError("no header line")
        header = json.loads(header_line)
        captured_at = datetime.fromisoformat(header["captured_at"])
        if header["size"] != len(jpeg) or header["sha256"] != hashlib.sha256(jpeg).hexdigest():
            raise ValueError("size or sha256 does not match the header")
        return SpoolEntry(
            path=path, neonate=str(header["neonate"]), captured_at=captured_at, reason=str(header["reason"]), jpeg=jpeg
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedEntry(f"{path.name}: {exc}") from exc


class Spool:
    """The spool folder (``rejected/`` and ``corrupt/`` beside the pending keyframes)."""

    def __init__(self, folder: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("the spool size cap must be > 0 bytes")
        self.folder = Path(folder)
        self.rejected_folder = self.folder / "rejected"
        self.corrupt_folder = self.folder / "corrupt"
        self.max_bytes = max_bytes
        self.evicted = 0
        for folder_ in (self.folder, self.rejected_folder, self.corrupt_folder):
            folder_.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(f"{TEMP_PREFIX}*"):
            # A write cut short (SIGKILL, power cut) before its rename: never complete, never sent.
            logger.warning("spool: removing %s, a write that did not complete", leftover.name)
            leftover.unlink(missing_ok=True)

    def pending(self) -> list[Path]:
        """Spooled keyframes, oldest capture first.

        A keyframe still being written (its temporary name also ends in ``.kf``) is not pending yet:
        sending it would send it twice (once more under its final name) or, half-written, move it to
        ``corrupt/``.
        """
        return sorted(
            p
            for p in self.folder.iterdir()
            if p.suffix == SUFFIX and not p.name.startswith(TEMP_PREFIX) and p.is_file()
        )

    def backlog(self) -> int:
        return len(self.pending())

    def add(self, *, neonate: str, captured_at: datetime, reason: str, jpeg: bytes) -> Path | None:
        """Store one keyframe durably; None when this very keyframe is spooled already."""
        if captured_at.tzinfo is None:
            raise ValueError("captured_at must be timezone-aware")
        sha256 = hashlib.sha256(jpeg).hexdigest()
        micros = int(captured_at.astimezone(UTC).timestamp() * 1_000_000)
        path = self.folder / f"{micros:017d}-{sha256[:16]}{SUFFIX}"
        if path.exists():
            return None
        header = {
            "neonate": neonate,
            "captured_at": captured_at.astimezone(UTC).isoformat(),
            "reason": reason,
            "sha256": sha256,
            "size": len(jpeg),
        }
        data = json.dumps(header).encode() + b"\n" + jpeg
        self._make_room(len(data))
        _write_durably(path, data)
        return path

    def _make_room(self, incoming: int) -> None:
        """Evict oldest keyframes until ``incoming`` more bytes fit under the cap (warned and counted)."""
        entries = [(p, p.stat().st_size) for p in self.pending()]
        total = sum(size for _p, size in entries)
        for path, size in entries:
            if total + incoming <= self.max_bytes:
                break
            logger.warning(
                "spool: over its cap of %d bytes, evicting the oldest keyframe %s (never sent)",
                self.max_bytes,
                path.name,
            )
            path.unlink(missing_ok=True)
            total -= size
            self.evicted += 1

    def read(self, path: Path) -> SpoolEntry | None:
        """The entry at ``path``; a damaged one is moved to ``corrupt/`` and None returned."""
        try:
            return entry_read(path)
        except FileNotFoundError:
            return None
        except DamagedEntry as exc:
            logger.error("spool: %s; moved to corrupt/", exc)
            os.replace(path, self.corrupt_folder / path.name)
            return None

    def remove(self, entry: SpoolEntry) -> None:
        """After the server accepted it (2xx)."""
        entry.path.unlink(missing_ok=True)
        _fsync_folder(self.folder)

    def reject(self, entry: SpoolEntry, *, status: int, answer: bytes) -> Path:
        """Move a keyframe the server refused to ``rejected/``, its answer beside it."""
        target = self.rejected_folder / entry.name
        _write_durably(
            target.with_suffix(".answer.json"),
            json.dumps(
                {"status": status, "answer": answer.decode("utf-8", "replace"), "at": datetime.now(UTC).isoformat()}
            ).encode(),
        )
        os.replace(entry.path, target)
        _fsync_folder(self.folder)
        return target
