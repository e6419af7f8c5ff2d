"""The per-frame result that every caller (Celery task, CLI, benchmark) consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

Status = Literal["ok", "no_face", "unreadable"]
Label = Literal["pain", "nonpain"]

STATUS_OK: Status = "ok"
STATUS_NO_FACE: Status = "no_face"
STATUS_UNREADABLE: Status = "unreadable"

TIMING_STAGES = ("decode", "detect", "classify")


def empty_timings() -> dict[str, float]:
    """Timings dict with every stage present, so consumers never meet a missing key."""
    return dict.fromkeys(TIMING_STAGES, 0.0)


@dataclass
class FrameOutcome:
    """What the pipeline concluded about one input frame.

    ``status`` is ``ok`` (a face was found and classified), ``no_face`` (image decoded,
    no face) or ``unreadable`` (not an acceptable image; ``reason`` says why).
    ``box`` is ``(x, y, w, h)`` in pixels of the decoded image after EXIF transpose: the
    face box expanded by the pipeline margin and clipped, i.e. the region that was cropped.
    ``confidence`` is the probability of the predicted ``label``; ``timings_ms`` has the
    keys ``decode``, ``detect`` and ``classify`` (batched stages are amortised per frame).
    ``frame_sha256`` is the hash of the raw input bytes (``None`` only when no bytes were
    read, e.g. a missing file in the CLI).
    """

    status: Status
    reason: str = ""
    box: tuple[int, int, int, int] | None = None
    crop: Image.Image | None = None
    p_pain: float | None = None
    label: Label | None = None
    confidence: float | None = None
    model_name: str = ""
    model_version: str = ""
    weights_sha256: str = ""
    frame_sha256: str | None = None
    timings_ms: dict[str, float] = field(default_factory=empty_timings)
    face_score: float | None = None
    #: Grad-CAM map ``(224, 224)`` in [0, 1] when the pipeline runs with ``saliency=True``.
    saliency_map: Any = None
    #: ``crop`` already encoded as a JPEG (quality 90) by the GPU path (Pillow in its encoder threads), else ``None``.
    crop_jpeg: bytes | None = None
    #: ``(embedding, mirrored embedding or None)`` when the model judges frames against a per-neonate
    #: baseline (:mod:`inference.baseline`); ``p_pain`` is then the cold-start score until rescored.
    embedding: Any = None
    #: How a baseline model scored this frame (set by the caller that knows the neonate): ``used``
    #: (False: cold start), ``id``, ``digest``, ``frames`` (frames it held), ``min_frames``.
    baseline: dict[str, Any] | None = None

    @property
    def is_ok(self) -> bool:
        """True when the frame was classified."""
        return self.status == STATUS_OK

    def to_json_dict(self, file: str | None = None) -> dict[str, Any]:
        """JSON-serialisable fields printed by ``python -m inference predict --json``."""
        return {
            "file": file,
            "status": self.status,
            "reason": self.reason,
            "box": list(self.box) if self.box is not None else None,
            "face_score": _round(self.face_score, 4),
            "p_pain": _round(self.p_pain, 6),
            "label": self.label,
            "confidence": _round(self.confidence, 6),
            "model": {"name": self.model_name, "version": self.model_version},
            "weights_sha256": self.weights_sha256,
            "frame_sha256": self.frame_sha256,
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)
