"""Helpers shared by the inference tests (imported by conftest and test modules)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Where the astronaut's face sits in the 512x512 original (RetinaFace, rounded).
ASTRONAUT_FACE = (177, 56, 95, 120)


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    """Image -> file bytes in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def on_canvas(image: Image.Image, size: tuple[int, int], at: tuple[int, int], fill: int = 60) -> Image.Image:
    """Paste ``image`` onto a grey canvas of ``size`` at ``at``."""
    canvas = Image.new("RGB", size, (fill, fill, fill))
    canvas.paste(image, at)
    return canvas


def png_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG signature + IHDR + IEND that claims ``width`` x ``height``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def exif_rotated_jpeg(upright: Image.Image, orientation: int = 6) -> bytes:
    """Store ``upright`` rotated as a phone held sideways does, tagged with EXIF ``orientation``."""
    stored = upright.rotate(90, expand=True)  # CCW; orientation 6 means "rotate 90 CW to view"
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=92, exif=exif.tobytes())


def write_scene_clip(path: Path, *, scenes: int = 4, frames_per_scene: int = 15, fps: float = 15.0) -> None:
    """An mp4v clip of ``scenes`` static scenes (slow motion + sensor noise inside each).

    Each scene change is abrupt, so the clip has ``scenes - 1`` true keyframes, at
    frames ``frames_per_scene * k``.
    """
    rng = np.random.default_rng(7)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 240))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    palette = [(40, 40, 40), (200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60), (90, 30, 160)]
    try:
        for scene in range(scenes):
            base = np.full((240, 320, 3), palette[scene % len(palette)], np.uint8)
            cv2.circle(base, (60 + 40 * scene, 120), 40, (255, 255, 255), -1)
            for i in range(frames_per_scene):
                frame = cv2.add(base, rng.integers(0, 6, base.shape, dtype=np.uint8))
                cv2.rectangle(frame, (10 + 2 * i, 10), (30 + 2 * i, 30), (0, 0, 0), -1)
                writer.write(frame)
    finally:
        writer.release()
