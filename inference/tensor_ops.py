"""Decode, crop, letterbox and normalise frames as tensors on the model's device (the GPU path).

The same steps as :mod:`inference.decode` and :mod:`inference.preprocess`, batched:

* :func:`decode_frames`: every frame's header is checked on the CPU exactly as
  :func:`inference.decode.decode_image` does (caps, formats, text); upright, complete baseline
  JPEGs (RGB or grey) are decoded together by ``torchvision.io.decode_jpeg`` on the device (nvJPEG
  on CUDA); PNG, WebP, the rest, EXIF-rotated JPEGs and any JPEG the batch decoder refuses are
  decoded on the CPU by ``decode_image`` (its reasons for a bad file) and copied over.
* :func:`crop_letterbox`: each face box cut out and letterboxed to ``size`` with one
  ``torchvision.ops.roi_align`` per frame shape: an output bin spans ``w / new_w`` source pixels,
  as in PIL's resize, and bins are averaged over ``ceil(w / new_w)`` samples per side when
  shrinking (PIL filters with a triangle instead, hence the tolerance the tests state);
  the padding is then painted in the spec's fill colour and values rounded to 8-bit levels.
* :func:`normalise_crops`: the spec's centre crop, input size, grey conversion and mean/std.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.ops import roi_align

from inference.decode import UnreadableImage, _exif_orientation, _open_checked, decode_image
from inference.preprocess import validate_spec

logger = logging.getLogger(__name__)

#: Frames per ``roi_align`` call (float32 copies of the frames live only for one call).
CROP_CHUNK = 64
#: PIL's integer luma weights (ITU-R 601-2, x 65536), so grey crops match ``Image.convert("L")``.
_LUMA = (19595 / 65536, 38470 / 65536, 7471 / 65536)


@dataclass
class DecodedFrame:
    """One frame's hash and its ``uint8 (3, H, W)`` RGB tensor on the device, or the reason it has none."""

    sha256: str
    tensor: torch.Tensor | None = None
    reason: str = ""
    #: ``device`` (batched JPEG decoder) or ``cpu`` (PIL fallback); empty when unreadable.
    decoder: str = ""


def _device_decodable(data: bytes, *, max_pixels: int, max_bytes: int) -> bool:
    """True if ``decode_image`` would accept ``data`` and it is an upright, complete JPEG the batch decoder reads."""
    image = _open_checked(data, max_pixels=max_pixels, max_bytes=max_bytes)  # raises UnreadableImage
    if image.format not in {"JPEG", "MPO"} or image.mode not in {"RGB", "L"}:
        return False
    if image.info.get("progressive") or image.info.get("progression"):
        return False
    # A truncated file must get decode_image's reason, not the device decoder's grey fill.
    return bytes(data[-2:]) == b"\xff\xd9" and _exif_orientation(image) == 1


def _cpu_decode(data: bytes, device: torch.device, *, max_pixels: int, max_bytes: int) -> DecodedFrame:
    frame = DecodedFrame(sha256="")
    try:
        image = decode_image(data, max_pixels=max_pixels, max_bytes=max_bytes)
    except UnreadableImage as exc:
        frame.reason = exc.reason
        return frame
    except Exception as exc:  # a decoder bug must cost one frame, not the batch
        logger.exception("unexpected error decoding a frame")
        frame.reason = f"decoder error ({type(exc).__name__}: {exc})"
        return frame
    array = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    frame.tensor = array.to(device, non_blocking=True)
    frame.decoder = "cpu"
    return frame


def decode_frames(
    inputs: Sequence[bytes], device: torch.device, *, max_pixels: int, max_bytes: int
) -> list[DecodedFrame]:
    """Decoded frames in input order; JPEGs batched on ``device``, the rest through ``decode_image``."""
    frames: list[DecodedFrame] = []
    batch: list[int] = []
    for index, data in enumerate(inputs):
        raw = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
        digest = hashlib.sha256(raw).hexdigest() if isinstance(raw, bytes) else ""
        try:
            on_device = _device_decodable(raw, max_pixels=max_pixels, max_bytes=max_bytes)
        except UnreadableImage as exc:
            frames.append(DecodedFrame(sha256=digest, reason=exc.reason))
            continue
        if on_device:
            frames.append(DecodedFrame(sha256=digest))
            batch.append(index)
        else:
            frame = _cpu_decode(raw, device, max_pixels=max_pixels, max_bytes=max_bytes)
            frame.sha256 = digest
            frames.append(frame)
    if batch:
        encoded = [torch.frombuffer(bytearray(inputs[i]), dtype=torch.uint8) for i in batch]
        try:
            decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as exc:  # one bad JPEG fails the whole call: decode those frames one by one
            logger.info("batched JPEG decode failed (%s); decoding %d frames one by one", exc, len(batch))
            decoded = [None] * len(batch)
        for index, tensor in zip(batch, decoded):
            if tensor is None:
                fallback = _cpu_decode(inputs[index], device, max_pixels=max_pixels, max_bytes=max_bytes)
                frames[index].tensor, frames[index].reason, frames[index].decoder = (
                    fallback.tensor,
                    fallback.reason,
                    fallback.decoder,
                )
            else:
                frames[index].tensor, frames[index].decoder = tensor, "device"
    return frames


def _letterbox_geometry(box: Sequence[int], size: int) -> tuple[list[float], tuple[int, int, int, int]]:
    """The roi (x0, y0, x1, y1) whose ``size`` x ``size`` bins map onto the letterbox, and the valid (x, y, w, h)."""
    x, y, w, h = (int(v) for v in box)
    scale = size / max(w, h)
    new_w = max(1, min(size, round(w * scale)))
    new_h = max(1, min(size, round(h * scale)))
    off_x, off_y = (size - new_w) // 2, (size - new_h) // 2
    bin_w, bin_h = w / new_w, h / new_h
    x0, y0 = x - off_x * bin_w, y - off_y * bin_h
    return [x0, y0, x0 + size * bin_w, y0 + size * bin_h], (off_x, off_y, new_w, new_h)


def crop_letterbox(
    frames: Sequence[torch.Tensor], boxes: Sequence[Sequence[int]], size: int, fill: Sequence[int]
) -> torch.Tensor:
    """``float32 (K, 3, size, size)`` letterboxed face crops, values rounded to 0..255, on the frames' device.

    ``frames[i]`` is a ``uint8 (3, H, W)`` RGB tensor and ``boxes[i]`` its face ``(x, y, w, h)``
    (already grown by the margin and clipped, as :func:`inference.detect.select_face` returns it).
    """
    if not frames:
        raise ValueError("crop_letterbox needs at least one frame")
    device = frames[0].device
    out = torch.empty((len(frames), 3, size, size), dtype=torch.float32, device=device)
    valid = torch.zeros((len(frames), 1, size, size), dtype=torch.bool, device=device)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, frame in enumerate(frames):
        by_shape.setdefault(tuple(frame.shape), []).append(index)
    for members in by_shape.values():
        for start in range(0, len(members), CROP_CHUNK):
            chunk = members[start : start + CROP_CHUNK]
            images = torch.stack([frames[i] for i in chunk]).float()
            rois = []
            for row, index in enumerate(chunk):
                roi, (off_x, off_y, new_w, new_h) = _letterbox_geometry(boxes[index], size)
                rois.append([float(row), *roi])
                valid[index, :, off_y : off_y + new_h, off_x : off_x + new_w] = True
            rois_tensor = torch.tensor(rois, dtype=torch.float32, device=device)
            out[chunk] = roi_align(images, rois_tensor, (size, size), spatial_scale=1.0, sampling_ratio=0, aligned=True)
    fill_tensor = torch.tensor([float(v) for v in fill], device=device).view(1, 3, 1, 1)
    return torch.where(valid, out.round_().clamp_(0, 255), fill_tensor)


def normalise_crops(crops: torch.Tensor, spec: Mapping[str, Any]) -> torch.Tensor:
    """Letterboxed ``(K, 3, size, size)`` 0..255 crops -> the model's normalised input, channels-last.

    The tensor counterpart of :func:`inference.preprocess.batch_tensor` after its letterbox:
    centre crop (``T.CenterCrop``'s rounding), resize to ``input_size`` (antialiased bilinear,
    as PIL), grey (PIL's luma weights), each step rounded to 8-bit levels as PIL's are.
    """
    spec = validate_spec(spec)
    batch = crops
    side = spec["size"]
    if spec["center_crop"] < 1.0:
        side = max(1, round(spec["size"] * spec["center_crop"]))
        top = int(round((spec["size"] - side) / 2.0))
        batch = batch[:, :, top : top + side, top : top + side]
    if spec["input_size"] != side:
        size = (spec["input_size"], spec["input_size"])
        batch = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
        batch = batch.round().clamp(0, 255)
    if spec["grayscale"]:
        weights = torch.tensor(_LUMA, device=batch.device).view(1, 3, 1, 1)
        batch = (batch * weights).sum(dim=1, keepdim=True).add(0.5).floor().clamp(0, 255)
    mean = torch.tensor(spec["mean"], device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], device=batch.device).view(1, -1, 1, 1)
    batch = (batch / 255.0 - mean) / std
    return batch.contiguous(memory_format=torch.channels_last) if batch.shape[1] > 1 else batch.contiguous()


#: JPEG quality of the stored crops (the worker's display copies: triage.services._jpeg_bytes uses 90 too).
CROP_JPEG_QUALITY = 90


def _jpeg(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=CROP_JPEG_QUALITY)
    return buffer.getvalue()


def crops_to_jpeg(images: Sequence[Any], pool: Any | None = None) -> list[bytes]:
    """PIL crops -> JPEG bytes, in ``pool``'s threads when given (Pillow's encoder releases the GIL).

    nvJPEG's encoder (``torchvision.io.encode_jpeg`` on CUDA) was measured slower here: it waits for
    each image in turn, ~0.4 ms of the pipeline's thread per crop on an H200.
    """
    return list(pool.map(_jpeg, images)) if pool is not None else [_jpeg(image) for image in images]


def crops_to_pil(crops: torch.Tensor) -> list[Any]:
    """``(K, 3, S, S)`` 0..255 crops -> RGB PIL images (one device-to-host copy)."""
    from PIL import Image

    pixels = crops.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return [Image.fromarray(array) for array in pixels]
