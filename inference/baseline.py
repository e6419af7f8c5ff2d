"""The per-neonate baseline: a baby's own recent frames define its resting face.

A model trained with a baseline (bundle metadata ``baseline``) judges a frame relative to it: the
head sees ``embedding - baseline``, where ``baseline`` is the element-wise median of the backbone
embeddings (the head's input) of the neonate's last ``window`` frames. No label is used: pain
frames are the minority, and the median ignores a minority. With fewer than ``min_frames`` frames
there is no baseline (cold start): the frame is centred on the training population's median
(``reference``) instead, and the prediction says so.

Training, LOSOCV, ``evaluate_model --model`` and the worker all go through
:func:`relative_p_pain`, so the served and the evaluated ``p_pain`` are the same function of the
same numbers. Pure numpy/torch: the Django side (``triage.services.baselines``) persists windows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

#: Frames a neonate needs before its baseline is used; below it the prediction is a cold start.
BASELINE_MIN_FRAMES = 10
#: Frames a baseline keeps (the most recent): bounds storage and follows a baby that changes.
BASELINE_WINDOW = 120
BASELINE_MODES = ("none", "neonate")


@dataclass(frozen=True)
class BaselinePolicy:
    """How a model's baseline is formed (stored in the bundle's metadata under ``baseline``)."""

    min_frames: int = BASELINE_MIN_FRAMES
    window: int = BASELINE_WINDOW
    statistic: str = "median"
    of: str = "embedding"

    def __post_init__(self) -> None:
        if self.min_frames < 1 or self.window < self.min_frames:
            raise ValueError(f"need 1 <= min_frames <= window, got {self.min_frames}, {self.window}")
        if self.statistic != "median" or self.of != "embedding":
            raise ValueError("only the median of embeddings is implemented")

    def describe(self) -> dict[str, Any]:
        return {"min_frames": self.min_frames, "window": self.window, "statistic": self.statistic, "of": self.of}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> BaselinePolicy | None:
        """The policy of a bundle's metadata, or ``None`` for a model without a baseline."""
        entry = metadata.get("baseline")
        if not entry:
            return None
        return cls(**{k: entry[k] for k in ("min_frames", "window", "statistic", "of") if k in entry})


def baseline_statistic(embeddings: np.ndarray) -> np.ndarray:
    """Element-wise median of ``(n, d)`` embeddings, float32 ``(d,)``."""
    values = np.asarray(embeddings, dtype=np.float32)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"need (n >= 1, d) embeddings, got shape {values.shape}")
    return np.median(values, axis=0).astype(np.float32)


def baseline_window_append(window: np.ndarray | None, embeddings: np.ndarray, *, size: int) -> np.ndarray:
    """``window`` with ``embeddings`` appended (oldest first), cut to the last ``size`` rows."""
    new = np.asarray(embeddings, dtype=np.float32).reshape(len(embeddings), -1)
    rows = new if window is None or window.size == 0 else np.concatenate([window.astype(np.float32), new])
    return rows[-size:]


def baseline_of_window(window: np.ndarray | None, policy: BaselinePolicy) -> np.ndarray | None:
    """The baseline a window gives: the median of its last ``policy.window`` rows, or ``None`` (cold start)."""
    if window is None or len(window) < policy.min_frames:
        return None
    return baseline_statistic(window[-policy.window :])


def baseline_digest(statistic: np.ndarray) -> str:
    """A short fingerprint of a baseline (recorded on each prediction that used it)."""
    return hashlib.sha256(np.asarray(statistic, dtype=np.float32).tobytes()).hexdigest()[:16]


def array_to_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype=np.float32).tobytes()


def array_from_bytes(raw: bytes | memoryview | None, dim: int) -> np.ndarray | None:
    if not raw:
        return None
    return np.frombuffer(bytes(raw), dtype=np.float32).reshape(-1, dim).copy()


def subject_baselines(
    embeddings: np.ndarray, subjects: Sequence[str], policy: BaselinePolicy
) -> dict[str, np.ndarray | None]:
    """Each subject's baseline from its own frames (at most the last ``window``, in the given order)."""
    subjects_arr = np.asarray(subjects)
    out: dict[str, np.ndarray | None] = {}
    for subject in sorted(set(subjects)):
        out[subject] = baseline_of_window(np.asarray(embeddings)[subjects_arr == subject], policy)
    return out


def population_reference(baselines: Sequence[np.ndarray | None], embeddings: np.ndarray) -> np.ndarray:
    """The cold-start centre: the median of the training subjects' baselines (all embeddings if none has one)."""
    present = [b for b in baselines if b is not None]
    return baseline_statistic(np.stack(present)) if present else baseline_statistic(embeddings)


def centres_for(subjects: Sequence[str], baselines: dict[str, np.ndarray | None], reference: np.ndarray) -> np.ndarray:
    """``(n, d)``: the baseline of each image's subject, the reference where it has none."""
    return np.stack([baselines.get(s) if baselines.get(s) is not None else reference for s in subjects])


def relative_logits(
    head: torch.nn.Module, embeddings: torch.Tensor, flipped: torch.Tensor | None, centres: torch.Tensor
) -> torch.Tensor:
    """Logits of ``head(embedding - centre)``, averaged with the mirror image's when given.

    A head with ``takes_centre`` (the facial-movement model, :mod:`inference.face_motion`) is
    given ``(embedding, centre)``: it compares the two faces itself.
    """
    if getattr(head, "takes_centre", False):
        logits = head(embeddings, centres)
        if flipped is not None:
            logits = (logits + head(flipped, centres)) / 2
        return logits
    logits = head(embeddings - centres)
    if flipped is not None:
        logits = (logits + head(flipped - centres)) / 2
    return logits


def relative_p_pain(
    head: torch.nn.Module,
    embeddings: np.ndarray,
    flipped: np.ndarray | None,
    centres: np.ndarray,
    *,
    temperature: float = 1.0,
    pain_index: int = 1,
) -> np.ndarray:
    """p(pain) of each embedding relative to its centre (float64 ``(n,)``): what serving and evaluation compute."""
    if len(embeddings) == 0:
        return np.zeros(0)
    head.eval()
    with torch.inference_mode():
        e = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        f = torch.as_tensor(np.asarray(flipped, dtype=np.float32)) if flipped is not None else None
        c = torch.as_tensor(np.asarray(centres, dtype=np.float32))
        logits = relative_logits(head, e, f, c)
        return torch.softmax(logits / temperature, dim=1)[:, pain_index].double().numpy()


def model_embeddings(model: Any, crops: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray | None]:
    """Backbone embeddings of a :class:`~inference.bundle.LoadedModel`'s crops (and of their mirror
    images when it averages them), in chunks of its ``max_batch``."""
    dim = int(model.module.feature_dim)
    if not crops:
        return np.zeros((0, dim), np.float32), (np.zeros((0, dim), np.float32) if model.flip_tta else None)
    plain, mirrored = [], []
    with torch.inference_mode():
        for start in range(0, len(crops), model.max_batch):
            batch = model.to_tensor(crops[start : start + model.max_batch])
            plain.append(model.module.backbone(batch).float().cpu())
            if model.flip_tta:
                mirrored.append(model.module.backbone(batch.flip(-1)).float().cpu())
    return torch.cat(plain).numpy(), (torch.cat(mirrored).numpy() if mirrored else None)


def model_reference(model: Any) -> np.ndarray:
    """The cold-start centre stored in a baseline model's metadata."""
    return np.asarray(model.metadata["baseline"]["reference"], dtype=np.float32)


def model_p_pain(
    model: Any,
    embeddings: np.ndarray,
    flipped: np.ndarray | None,
    baselines: Sequence[np.ndarray | None],
) -> np.ndarray:
    """p(pain) as served by a baseline model: each frame against its baseline, or the reference (cold start)."""
    reference = model_reference(model)
    centres = np.stack([b if b is not None else reference for b in baselines]) if len(baselines) else reference[None]
    return relative_p_pain(
        model.module.head,
        embeddings,
        flipped,
        centres[: len(embeddings)],
        temperature=model.temperature,
        pain_index=model.pain_index,
    )


def model_evaluate_p_pain(
    model: Any,
    crops: Sequence[Image.Image],
    subjects: Sequence[str],
    *,
    baseline_crops: dict[str, Sequence[Image.Image]] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """p(pain) of labelled crops as the model serves them, and how each subject's baseline was formed.

    Without a baseline in the model: ``predict_proba``. With one: each subject's baseline is the
    median embedding of ``baseline_crops[subject]`` when given (the frames the served baseline was
    built on), else of the subject's own crops (unlabelled use only), at most the last ``window``;
    a subject with fewer than ``min_frames`` is a cold start, centred on the reference.
    """
    policy = BaselinePolicy.from_metadata(model.metadata)
    if policy is None:
        return model.predict_proba(list(crops))[:, model.pain_index].astype(np.float64), {"baseline": "none"}
    embeddings, flipped = model_embeddings(model, list(crops))
    subjects_arr = np.asarray(subjects)
    baselines: dict[str, np.ndarray | None] = {}
    for subject in sorted(set(subjects)):
        if baseline_crops is not None and subject in baseline_crops:
            window, _ = model_embeddings(model, list(baseline_crops[subject]))
        else:
            window = embeddings[subjects_arr == subject]
        baselines[subject] = baseline_of_window(window, policy)
    p = model_p_pain(model, embeddings, flipped, [baselines[s] for s in subjects])
    info = {
        "baseline": "neonate",
        "policy": policy.describe(),
        "cold_start_subjects": sorted(s for s, b in baselines.items() if b is None),
    }
    return p, info
