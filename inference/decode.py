"""Defensive image decoding: bytes from a camera or an upload in, RGB PIL image out.

Everything a hostile or broken file can do is turned into :class:`UnreadableImage` with a
human-readable reason: empty input, text/SVG/HTML, unknown formats, decompression bombs
(the pixel cap is checked on the header, before any pixel is decoded), oversized files
and truncated data. Accepted images are EXIF-transposed and normalised to 8-bit RGB
whatever their mode (L, LA, P, PA, RGBA, CMYK, I;16, I, F, YCbCr, 1 ...).

This module imports only Pillow and numpy so the web process can call
:func:`sniff_image` on uploads without importing torch.
"""

from __future__ import annotations

import io
import logging
import sys
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: A 40 MP cap fits every bedside camera and phone photo while refusing bombs.
DEFAULT_MAX_PIXELS = 40_000_000
#: 20 MiB: a 40 MP JPEG at high quality is ~15 MiB.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

#: Raster formats we accept. Anything else Pillow can open (EPS via Ghostscript, PSD,
#: ICO, exotic scientific formats) is refused: smaller attack surface, nothing lost.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"})
# Pillow opener ids for them (MPO files are opened by the JPEG opener).
_OPENERS = sorted(ACCEPTED_FORMATS - {"MPO"})

# EXIF orientations 5-8 swap width and height once transposed.
_EXIF_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})

# Background used when flattening transparency: white, as image viewers show it.
_ALPHA_BACKGROUND = (255, 255, 255)


class UnreadableImage(ValueError):
    """Input bytes are not an acceptable image; ``reason`` is safe to show to a nurse."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sniff_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """Cheaply validate an upload and return ``{format, width, height, mode}``.

    Reads the header, checks the caps, then verifies the data without a full decode
    (PNG/TIFF/GIF chunk walk; JPEG is decoded at 1/8 scale, which still detects a
    truncated file). ``width``/``height`` are as displayed, i.e. after EXIF orientation.
    Raises :class:`UnreadableImage`.
    """
    image = _open_checked(data, max_pixels=max_pixels, max_bytes=max_bytes)
    fmt = str(image.format)
    mode = image.mode
    width, height = image.size
    try:
        if fmt in {"JPEG", "MPO"}:
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
        else:
            image.verify()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error ...
        raise UnreadableImage(f"corrupt or truncated {fmt} data ({_describe(exc)})") from exc
    # verify() leaves the image unusable, so read EXIF from a fresh (header-only) open.
    orientation = _exif_orientation(_pil_open(io.BytesIO(data), formats=_OPENERS))
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return {"format": fmt, "width": width, "height": height, "mode": mode}


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Image.Image:
    """Decode ``data`` to a fully loaded, EXIF-transposed 8-bit RGB image.

    Raises :class:`UnreadableImage` for anything that is not a complete raster image
    within the caps. Multi-frame files (GIF, TIFF, MPO) yield their first frame.
    """
    image = _open_checked(data, max_pixels=max_pixels, max_bytes=max_bytes)
    fmt = image.format
    try:
        image.seek(0)
        image.load()
    except Exception as exc:
        raise UnreadableImage(f"corrupt or truncated {fmt} data ({_describe(exc)})") from exc
    image = _exif_transpose(image)
    try:
        return to_rgb(image)
    except Exception as exc:
        raise UnreadableImage(f"unsupported pixel format {image.mode!r} ({_describe(exc)})") from exc


# What Pillow reports in ``Image.info`` that is rendering data, not a description of the picture.
_RENDERING_INFO = frozenset(
    {
        "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "icc_profile", "progressive",
        "progression", "adobe", "adobe_transform", "gamma", "transparency", "interlace", "background",
        "srgb", "aspect", "compression", "loop", "duration", "version", "extension", "chromaticity",
        "lossless", "bbox",
    }
)
# JPEG APPn segments that hold only rendering data: JFIF (APP0), ICC (APP2), Adobe (APP14).
_RENDERING_JPEG_APPS = frozenset({"APP0", "APP2", "APP14"})
# Formats that cannot carry descriptive metadata in what Pillow writes or reads back.
_NO_METADATA_FORMATS = frozenset({"BMP"})


# PNG chunks that carry text or EXIF, wherever they are (Pillow reports those after the pixel data
# only once the image is decoded, so the chunk list is read instead).
_PNG_METADATA_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt", b"eXIf"})


def _png_has_metadata_chunks(data: bytes) -> bool:
    position = 8  # after the signature
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = bytes(data[position + 4 : position + 8])
        if kind in _PNG_METADATA_CHUNKS:
            return True
        if kind == b"IEND":
            return False
        position += 12 + length
    return False


def _carries_metadata(image: Image.Image, data: bytes) -> bool:
    if image.format in _NO_METADATA_FORMATS:
        return False
    if image.format in {"MPO", "TIFF"}:
        return True  # MPO always has EXIF and a second picture; any TIFF tag can hold text
    if set(image.info) - _RENDERING_INFO:
        return True
    if image.format == "PNG" and _png_has_metadata_chunks(data):
        return True
    return any(marker not in _RENDERING_JPEG_APPS for marker, _ in getattr(image, "applist", []))


def strip_metadata(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes | None:
    """The image without EXIF, XMP, comments or text chunks (GPS, a name in ImageDescription ...),
    with its EXIF orientation applied to the pixels; ``None`` when ``data`` carries none (stored as is).

    Re-encoded in the same format (JPEG at quality 95, others lossless; MPO as JPEG, TIFF as PNG),
    keeping the ICC colour profile. Deterministic: the same upload gives the same bytes.
    Raises :class:`UnreadableImage`.
    """
    image = _open_checked(data, max_pixels=max_pixels, max_bytes=max_bytes)
    if not _carries_metadata(image, bytes(data)):
        return None
    fmt = {"MPO": "JPEG", "TIFF": "PNG"}.get(str(image.format), str(image.format))
    try:
        image.seek(0)
        image.load()
        upright = _exif_transpose(image)
        options: dict[str, Any] = {}
        if image.info.get("icc_profile"):
            options["icc_profile"] = image.info["icc_profile"]
        if fmt == "JPEG":
            options.update(quality=95, subsampling=0)
        elif fmt == "WEBP":
            options.update(lossless=True)
        elif fmt in {"GIF", "PNG"} and "transparency" in image.info:
            options["transparency"] = image.info["transparency"]
        if fmt == "JPEG" and upright.mode not in {"RGB", "L", "CMYK"}:
            upright = to_rgb(upright)
        upright = upright.copy()
        upright.info = {}  # encoders fall back to ``info`` for comments and EXIF
        buffer = io.BytesIO()
        upright.save(buffer, format=fmt, **options)
    except UnreadableImage:
        raise
    except Exception as exc:
        raise UnreadableImage(f"cannot re-encode the {image.format} image without its metadata ({_describe(exc)})") from exc
    return buffer.getvalue()


def to_rgb(image: Image.Image) -> Image.Image:
    """Normalise any Pillow mode to 8-bit RGB.

    High-bit-depth greys (I;16, I, F) are rescaled by their real range rather than
    clipped, so a 16-bit frame does not come out white. Transparency is flattened on
    white.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}:
        return Image.fromarray(_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in {"RGBA", "LA", "La", "RGBa"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _ALPHA_BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    return image.convert("RGB")


def _pil_open(fp: io.BytesIO, *, formats: list[str]) -> Image.Image:
    """Pillow's own ``Image.open``, even after ultralytics has monkey-patched it.

    ultralytics replaces ``PIL.Image.open`` with a wrapper that, on an unidentified file,
    tries to pip-install and register a HEIF plugin: a hostile upload must never trigger that.
    """
    opener = Image.open
    if getattr(opener, "__module__", "PIL.Image") != "PIL.Image":
        opener = getattr(sys.modules.get(opener.__module__), "_image_open", opener)
    return opener(fp, formats=formats)


def _open_checked(data: bytes, *, max_pixels: int, max_bytes: int) -> Image.Image:
    """Open lazily (header only) and apply every check that needs no pixel decoding."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UnreadableImage(f"expected bytes, got {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise UnreadableImage("empty file")
    if size > max_bytes:
        raise UnreadableImage(f"file is {size} bytes, over the {max_bytes}-byte limit")
    text_kind = _looks_like_text(bytes(data[:512]))
    if text_kind:
        raise UnreadableImage(f"{text_kind} is not an accepted image format")
    try:
        with warnings.catch_warnings():
            # Our own cap below is the policy; Pillow's global warning is noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Only the accepted parsers are tried: less attack surface, and plugins that other
            # libraries register (ultralytics' HEIF opener needs pi_heif) never run.
            image = _pil_open(io.BytesIO(data), formats=_OPENERS)
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"image dimensions exceed the decompression-bomb limit ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage(
            f"not a recognised image format (accepted: {', '.join(sorted(ACCEPTED_FORMATS - {'MPO'}))})"
        ) from exc
    except Exception as exc:
        raise UnreadableImage(f"cannot parse image header ({_describe(exc)})") from exc
    if image.format not in ACCEPTED_FORMATS:
        raise UnreadableImage(f"image format {image.format} is not accepted")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise UnreadableImage(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise UnreadableImage(f"image is {width}x{height} = {width * height} pixels, over the {max_pixels}-pixel limit")
    return image


def _looks_like_text(head: bytes) -> str | None:
    """Name the markup/text kind of ``head`` if it is one; browsers happily upload these."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith(b"<"):
        if b"<svg" in stripped:
            return "SVG"
        if b"<html" in stripped or stripped.startswith(b"<!doctype html"):
            return "HTML"
        return "XML/markup"
    if stripped.startswith(b"%pdf"):
        return "PDF"
    if head and _is_printable_text(head):
        return "plain text"
    return None


def _is_printable_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the 512-byte window is still text.
        if exc.start < len(head) - 3:
            return False
        decoded = head[: exc.start].decode("utf-8")
    return bool(decoded) and all(ch.isprintable() or ch in "\r\n\t\f" for ch in decoded)


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:
        return 1


def _exif_transpose(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation; a corrupt EXIF block must not make a good image unreadable."""
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception as exc:
        logger.warning("ignoring unusable EXIF orientation: %s", _describe(exc))
        return image
    return transposed if transposed is not None else image


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale an integer/float grey array to uint8 using its nominal range."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    values = array.astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(array.shape, dtype=np.uint8)
    low, high = float(finite.min()), float(finite.max())
    if np.issubdtype(array.dtype, np.floating):
        # Floats in [0, 1] are normalised intensities; anything else gets stretched.
        scale_low, scale_high = (0.0, 1.0) if low >= 0.0 and high <= 1.0 else (low, high)
    elif low >= 0 and high <= 255:
        scale_low, scale_high = 0.0, 255.0
    elif low >= 0 and high <= 65535:
        scale_low, scale_high = 0.0, 65535.0
    else:
        scale_low, scale_high = low, high
    span = max(scale_high - scale_low, 1e-12)
    values = np.nan_to_num(values, nan=scale_low)
    scaled = (values - scale_low) * (255.0 / span)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """CMYK to sRGB through the embedded ICC profile when present, else Pillow's formula."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            target = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, target, outputMode="RGB")
            if converted is not None:
                return converted
        except Exception as exc:  # a broken profile only costs colour accuracy
            logger.debug("ICC conversion failed, falling back: %s", _describe(exc))
    return image.convert("RGB")


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
