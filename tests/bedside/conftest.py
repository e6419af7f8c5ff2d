"""A stand-in NeoPain for the agent's unit tests: an HTTP server in a thread that stores uploads
by (neonate, sha256) like the real one and can be scripted to fail."""

from __future__ import annotations

import hashlib
import json
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.inference.inference_helpers import write_scene_clip


class FakeNeoPain(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.frames: dict[tuple[str, str], dict] = {}
        self.uploads: list[dict] = []
        self.heartbeats: list[dict] = []
        #: Answers given to the next uploads, in order: (status, headers, body); then the normal answer.
        self.script: list[tuple[int, dict, bytes]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeNeoPain

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/api/v1/devices/heartbeat/":
            with self.server.lock:
                self.server.heartbeats.append(json.loads(raw))
            self._answer(200, b"{}")
            return
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw
        )
        fields = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()
        }
        upload = {
            "token": self.headers["Authorization"],
            "neonate": fields["neonate"].decode(),
            "captured_at": fields["captured_at"].decode(),
            "sha256": hashlib.sha256(fields["image"]).hexdigest(),
            "image": fields["image"],
        }
        with self.server.lock:
            self.server.uploads.append(upload)
            if self.server.script:
                status, headers, body = self.server.script.pop(0)
                self._answer(status, body, headers)
                return
            key = (upload["neonate"], upload["sha256"])
            duplicate = key in self.server.frames
            self.server.frames.setdefault(key, upload)
        self._answer(
            200 if duplicate else 202, json.dumps({"id": len(self.server.frames), "duplicate": duplicate}).encode()
        )


@pytest.fixture
def fake_server():
    server = FakeNeoPain()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def scene_video(tmp_path_factory) -> Path:
    """4 static scenes of 4 s (15 fps): a keyframe at t=0 (heartbeat) and scene changes at 4, 8 and 12 s."""
    path = tmp_path_factory.mktemp("bedside") / "scenes.mp4"
    write_scene_clip(path, scenes=4, frames_per_scene=60, fps=15.0)
    return path
