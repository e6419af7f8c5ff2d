"""Decoding: awkward-but-valid images become RGB; hostile inputs become UnreadableImage."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from inference.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, UnreadableImage, decode_image, sniff_image, to_rgb
from inference.detect import get_detector
from tests.inference.inference_helpers import encode, exif_rotated_jpeg, png_header_only


def test_defaults_are_sane() -> None:
    assert DEFAULT_MAX_PIXELS == 40_000_000
    assert DEFAULT_MAX_BYTES == 20 * 1024 * 1024


@pytest.mark.parametrize(
    "mode,fmt",
    [
        ("RGB", "JPEG"),
        ("CMYK", "JPEG"),
        ("L", "PNG"),
        ("LA", "PNG"),
        ("RGBA", "PNG"),
        ("P", "PNG"),
        ("RGB", "WEBP"),
        ("RGB", "BMP"),
        ("RGB", "TIFF"),
        ("P", "GIF"),
    ],
)
def test_it_normalises_every_mode_to_rgb_and_the_face_is_still_found(
    bedside_frame: Image.Image, mode: str, fmt: str
) -> None:
    data = encode(bedside_frame.convert(mode), fmt)
    decoded = decode_image(data)
    assert decoded.mode == "RGB"
    assert decoded.size == bedside_frame.size
    faces = get_detector("retinaface").detect(decoded)
    assert len(faces) == 1, f"{mode}/{fmt}: expected the astronaut's face, got {faces}"
    assert faces[0].score > 0.9


def test_16_bit_grey_png_is_rescaled_not_clipped(bedside_frame: Image.Image) -> None:
    grey16 = (np.asarray(bedside_frame.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    data = encode(Image.fromarray(grey16), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    decoded = decode_image(data)
    assert decoded.mode == "RGB"
    back = np.asarray(decoded)[:, :, 0].astype(int)
    expected = np.asarray(bedside_frame.convert("L")).astype(int)
    assert np.abs(back - expected).max() <= 1
    assert len(get_detector("retinaface").detect(decoded)) == 1


def test_transparency_is_flattened_on_white() -> None:
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (10, 0, 20, 10))  # right half fully transparent
    out = np.asarray(to_rgb(rgba))
    assert tuple(out[5, 2]) == (255, 0, 0)
    assert tuple(out[5, 15]) == (255, 255, 255)


def test_32_bit_and_float_grey_use_their_range() -> None:
    ints = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32), mode="I")
    assert np.asarray(to_rgb(ints))[0, :, 0].tolist() == [0, 128, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert np.asarray(to_rgb(floats))[0, :, 0].tolist() == [0, 128, 255]


def test_exif_rotation_is_applied(bedside_frame: Image.Image) -> None:
    data = exif_rotated_jpeg(bedside_frame)
    raw = Image.open(io.BytesIO(data))
    assert raw.size == (480, 640)  # stored sideways
    decoded = decode_image(data)
    assert decoded.size == (640, 480)
    diff = np.abs(np.asarray(decoded, dtype=int) - np.asarray(bedside_frame, dtype=int)).mean()
    assert diff < 4.0, "decoded image is not the upright frame"
    assert sniff_image(data)["width"] == 640 and sniff_image(data)["height"] == 480


def test_multi_frame_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert tuple(np.asarray(decode_image(buffer.getvalue()))[0, 0]) == (255, 0, 0)


@pytest.fixture(scope="module")
def hostile(bedside_jpeg: bytes, bedside_frame: Image.Image) -> dict[str, bytes]:
    png = encode(bedside_frame, "PNG")
    rng = np.random.default_rng(3)
    return {
        "empty": b"",
        "text": b"patient notes: not an image\n",
        "svg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        "html": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
        "random": b"\x00\x07" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "truncated_jpeg": bedside_jpeg[: len(bedside_jpeg) // 2],
        "truncated_png": png[: len(png) // 2],
        "png_20000x20000": png_header_only(20000, 20000),
        "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    }


@pytest.mark.parametrize(
    "name,reason_part",
    [
        ("empty", "empty"),
        ("text", "plain text"),
        ("svg", "SVG"),
        ("html", "HTML"),
        ("random", "not a recognised image"),
        ("truncated_jpeg", "truncated"),
        ("truncated_png", "truncated"),
        ("png_20000x20000", "pixel"),
        ("pdf", "PDF"),
    ],
)
def test_hostile_input_is_unreadable_with_a_reason(hostile: dict[str, bytes], name: str, reason_part: str) -> None:
    with pytest.raises(UnreadableImage) as caught:
        decode_image(hostile[name])
    assert reason_part.lower() in caught.value.reason.lower()


@pytest.mark.parametrize(
    "name", ["empty", "text", "svg", "random", "truncated_jpeg", "truncated_png", "png_20000x20000"]
)
def test_sniff_rejects_what_decode_rejects(hostile: dict[str, bytes], name: str) -> None:
    with pytest.raises(UnreadableImage):
        sniff_image(hostile[name])


def test_pixel_cap_is_checked_on_the_header_before_decoding() -> None:
    # These files carry no pixel data at all: only a header check can reject them so.
    with pytest.raises(UnreadableImage, match="8000x8000 = 64000000 pixels, over the 40000000-pixel limit"):
        decode_image(png_header_only(8000, 8000))
    # Beyond twice Pillow's own bomb limit, Pillow refuses while parsing the header.
    with pytest.raises(UnreadableImage, match="decompression-bomb"):
        decode_image(png_header_only(20000, 20000), max_pixels=10**9)


def test_custom_caps(bedside_jpeg: bytes) -> None:
    with pytest.raises(UnreadableImage, match="byte limit"):
        decode_image(bedside_jpeg, max_bytes=1000)
    with pytest.raises(UnreadableImage, match="pixel limit"):
        decode_image(bedside_jpeg, max_pixels=640 * 480 - 1)
    assert decode_image(bedside_jpeg, max_pixels=640 * 480).size == (640, 480)


def test_sniff_reports_format_and_size(bedside_jpeg: bytes, no_face_png: bytes) -> None:
    assert sniff_image(bedside_jpeg) == {"format": "JPEG", "width": 640, "height": 480, "mode": "RGB"}
    assert sniff_image(no_face_png)["format"] == "PNG"


def test_unaccepted_raster_format_is_refused() -> None:
    data = encode(Image.new("RGB", (16, 16)), "ICO")
    # Only the accepted formats' parsers are tried, so an ICO is simply not recognised.
    with pytest.raises(UnreadableImage, match=r"not a recognised image format \(accepted: BMP, GIF, JPEG, PNG"):
        decode_image(data)


def test_decode_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, inference.decode; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_ultralytics_patched_pil_open_is_bypassed_for_hostile_bytes() -> None:
    """ultralytics wraps PIL.Image.open to pip-install a HEIF plugin on unknown files; uploads must not reach it."""
    from PIL import Image as PILImage

    from inference.detect import import_ultralytics_offline

    import_ultralytics_offline()
    assert PILImage.open.__module__ != "PIL.Image"  # the patch is in place in this process
    with pytest.raises(UnreadableImage, match="not a recognised image format"):
        decode_image(bytes(range(256)) * 8)
    assert "pi_heif" not in sys.modules
