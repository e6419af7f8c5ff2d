"""Talking to NeoPain over HTTP with the standard library: keyframe uploads, heartbeats, backoff."""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from bedside import __version__
from bedside.spool import SpoolEntry

#: Upload and heartbeat requests give up after this long (then retried like a connection error).
REQUEST_TIMEOUT_S = 30.0
#: Backoff between retries: 1 s doubling to at most 60 s, each wait drawn in [half, full] (jitter).
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
#: A server's Retry-After is honoured up to this long; a larger one is taken as this.
RETRY_AFTER_MAX_S = 600.0


@dataclass(frozen=True)
class Answer:
    """What became of one request: the HTTP status (0: no answer), the body, and what to do."""

    status: int
    body: bytes
    retry_after_s: float | None = None
    error: str = ""

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def duplicate(self) -> bool:
        """The server already held this image for this neonate (200 ``"duplicate": true``)."""
        if not self.accepted:
            return False
        try:
            return bool(json.loads(self.body).get("duplicate"))
        except (ValueError, AttributeError):
            return False

    @property
    def transient(self) -> bool:
        """Worth retrying the same keyframe: no answer, 5xx, 408, 429.

        401 and 403 count too: a refused token or role is the camera's configuration, not the
        keyframe's fault, and moving every keyframe to ``rejected/`` would empty the spool into a
        folder nobody sends. They stay spooled (logged as errors) until the token is fixed.
        """
        return self.status == 0 or self.status >= 500 or self.status in (401, 403, 408, 429)

    def describe(self) -> str:
        if self.status == 0:
            return f"no answer ({self.error})"
        return f"HTTP {self.status} {self.body[:200].decode('utf-8', 'replace')}"


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - (now or datetime.now(UTC))).total_seconds()), RETRY_AFTER_MAX_S)


def backoff_seconds(attempt: int, *, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
    """Wait before retry number ``attempt`` (1, 2, ...): exponential with jitter, at least Retry-After."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))
    wait = (rng or random).uniform(ceiling / 2, ceiling)
    return max(wait, retry_after_s or 0.0)


def _multipart(fields: dict[str, str], *, image: bytes, filename: str) -> tuple[bytes, str]:
    boundary = f"bedside-{uuid.uuid4().hex}"
    chunks = []
    for key, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    chunks.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
    )
    chunks += [image, f"\r\n--{boundary}--\r\n".encode()]
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


class Uplink:
    """The NeoPain server as the agent sees it (``Authorization: Token ...``)."""

    def __init__(self, *, server: str, token: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _request(self, path: str, *, body: bytes, content_type: str) -> Answer:
        request = urllib.request.Request(
            f"{self.server}{path}",
            data=body,
            method="POST",
            headers={
                "Authorization": f"Token {self.token}",
                "Content-Type": content_type,
                "User-Agent": f"neopain-bedside/{__version__}",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return Answer(status=response.status, body=response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read() if exc.fp is not None else b""
            return Answer(status=exc.code, body=body, retry_after_s=retry_after_seconds(exc.headers.get("Retry-After")))
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, a cut-off answer
            reason = getattr(exc, "reason", exc)
            return Answer(status=0, body=b"", error=f"{type(exc).__name__}: {reason}")

    def keyframe_send(self, entry: SpoolEntry) -> Answer:
        body, content_type = _multipart(
            {"neonate": entry.neonate, "captured_at": entry.captured_at.isoformat()},
            image=entry.jpeg,
            filename=entry.path.with_suffix(".jpg").name,
        )
        return self._request("/api/v1/frames/", body=body, content_type=content_type)

    def heartbeat_send(self, *, neonate: str, backlog: int) -> Answer:
        body = json.dumps({"agent_version": __version__, "spool_backlog": backlog, "neonate": neonate}).encode()
        return self._request("/api/v1/devices/heartbeat/", body=body, content_type="application/json")
