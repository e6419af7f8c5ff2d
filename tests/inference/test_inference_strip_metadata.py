"""EXIF, XMP, comments and text chunks are removed on ingest; orientation is applied (issue 16, item 10)."""

from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

from inference.decode import decode_image, strip_metadata

GPS_IFD = 0x8825
IMAGE_DESCRIPTION = 0x010E
ORIENTATION = 0x0112


def _exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[IMAGE_DESCRIPTION] = "Baby Jane Doe, bed 4"
    exif.get_ifd(GPS_IFD)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    if orientation:
        exif[ORIENTATION] = orientation
    return exif


def _picture(size=(40, 24)) -> Image.Image:
    image = Image.new("RGB", size, (30, 60, 90))
    image.paste((250, 10, 10), (0, 0, size[0] // 2, 8))  # a red block at the top left
    return image


def _saved(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _leftovers(data: bytes) -> list[str]:
    image = Image.open(io.BytesIO(data))
    found = [k for k in image.info if k in {"exif", "xmp", "XML:com.adobe.xmp", "comment", "description"}]
    found += list(getattr(image, "text", {}) or {})
    found += [marker for marker, body in getattr(image, "applist", []) if marker == "APP1"]
    if b"Jane Doe" in data:
        found.append("name in the bytes")
    return found


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("JPEG", {"exif": _exif(), "comment": b"Jane Doe"}),
        ("PNG", {"exif": _exif()}),
        ("WEBP", {"exif": _exif(), "lossless": True}),
        ("TIFF", {"exif": _exif()}),
        ("GIF", {"comment": b"Jane Doe"}),
    ],
)
def test_identifying_metadata_is_removed(fmt, params):
    data = _saved(_picture(), fmt, **params)
    assert b"Jane Doe" in data

    stripped = strip_metadata(data)

    assert stripped is not None and _leftovers(stripped) == []
    assert decode_image(stripped).size == (40, 24)


def test_png_text_chunks_are_removed():
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe")
    stripped = strip_metadata(_saved(_picture(), "PNG", pnginfo=info))

    assert stripped is not None and _leftovers(stripped) == []


def test_the_orientation_is_applied_to_the_pixels_before_the_exif_goes():
    upright = _picture((40, 24))
    # Stored rotated, with the EXIF tag saying how to turn it upright (6: rotate 90 clockwise to view).
    data = _saved(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=_exif(orientation=6), quality=95)

    stripped = strip_metadata(data)

    image = Image.open(io.BytesIO(stripped))
    assert image.size == (40, 24) and "exif" not in image.info
    assert decode_image(stripped).getpixel((4, 2))[0] > 200  # the red mark is top-left again


def test_a_clean_image_is_stored_as_uploaded_and_stripping_is_deterministic():
    clean = _saved(_picture(), "PNG")
    tagged = _saved(_picture(), "JPEG", exif=_exif())

    assert strip_metadata(clean) is None
    assert strip_metadata(tagged) == strip_metadata(tagged)


def test_a_png_text_chunk_after_the_pixels_is_found_without_decoding():
    import zlib

    data = _saved(_picture(), "PNG")
    body = b"Comment\x00Jane Doe"
    chunk = len(body).to_bytes(4, "big") + b"tEXt" + body + zlib.crc32(b"tEXt" + body).to_bytes(4, "big")
    trailing = data[:-12] + chunk + data[-12:]  # before IEND, after IDAT

    stripped = strip_metadata(trailing)

    assert stripped is not None and b"Jane Doe" not in stripped
