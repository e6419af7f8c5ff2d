"""Facial actions a nurse can read, from MediaPipe's 468-point face mesh run on the served face crop.

The mesh model (``face_landmark.tflite``, Apache-2.0) is taken out of the ``mediapipe==0.10.21``
wheel at install time by ``scripts/face_mesh_fetch.sh`` (never committed, never downloaded at run
time) and runs under ``ai-edge-litert`` (numpy 2.x; mediapipe itself pins numpy<2). Its path:
``NEOPAIN_FACE_MESH_MODEL``, else ``weights/face_landmark.tflite`` in the repository.

:data:`ACTIONS` are the landmark geometry of what neonatal pain scales score (NIPS, NFCS: brow
bulge/lowering, eye squeeze, nasolabial furrow, open lips, horizontal and vertical mouth stretch),
each a distance divided by the face's inter-ocular distance, so scale and zoom cancel.
:func:`action_features` adds the pairwise distances among :data:`GEOMETRY_POINTS` (the same
normalisation) for a classifier. Both are meant relative to the neonate's own baseline
(:mod:`inference.baseline`): ``eye_squeeze -38%`` means the eyes are 38% less open than at rest.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

MESH_INPUT_SIZE = 192
MESH_POINTS = 468
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "weights" / "face_landmark.tflite"

# Canonical MediaPipe face-mesh indices (left/right as seen in the image).
_EYE_OUTER = (33, 263)
_EYES = {"left": (33, 133, 159, 145), "right": (263, 362, 386, 374)}  # outer, inner, upper lid, lower lid
_BROW_MID_TO_LID = ((105, 159), (334, 386))
_BROW_INNER = (107, 336)
_ALA_TO_MOUTH_CORNER = ((129, 61), (358, 291))
_LIPS_INNER = (13, 14)
_MOUTH_CORNERS = (61, 291)
_LIPS_OUTER = (0, 17)

#: Action name -> (what it measures, which direction is the pain sign).
ACTIONS: dict[str, tuple[str, str]] = {
    "brow_lowering": ("brow-to-upper-lid distance", "smaller"),
    "brow_furrow": ("distance between the inner brow ends", "smaller"),
    "eye_squeeze": ("eye opening over eye width", "smaller"),
    "nasolabial_furrow": ("nose wing to mouth corner distance", "smaller"),
    "lips_open": ("gap between the inner lips", "larger"),
    "mouth_stretch_horizontal": ("mouth width", "larger"),
    "mouth_stretch_vertical": ("outer lip height", "larger"),
}

#: Landmarks whose pairwise distances feed the classifier: brows, eyes, nose, mouth, cheeks (40).
GEOMETRY_POINTS = (
    70, 63, 105, 66, 107, 300, 293, 334, 296, 336,
    33, 133, 159, 145, 263, 362, 386, 374,
    168, 6, 1, 2, 98, 327, 129, 358,
    61, 291, 0, 17, 13, 14, 37, 267, 84, 314, 78, 308,
    205, 425,
)  # fmt: skip


class FaceMeshUnavailable(RuntimeError):
    """The face-mesh model file or its runtime is missing (run scripts/face_mesh_fetch.sh)."""


def face_mesh_model_path() -> Path:
    return Path(os.environ.get("NEOPAIN_FACE_MESH_MODEL", "").strip() or DEFAULT_MODEL).expanduser()


@dataclass
class FaceMesh:
    """The face-mesh model on LiteRT, one interpreter per instance (not thread-safe: one lock)."""

    path: Path
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.path.is_file():
            raise FaceMeshUnavailable(
                f"face-mesh model not found at {self.path}: run scripts/face_mesh_fetch.sh "
                "(or set NEOPAIN_FACE_MESH_MODEL)"
            )
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - a requirement
            raise FaceMeshUnavailable("ai-edge-litert is not installed (requirements.txt)") from exc
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        self._points = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == MESH_POINTS * 3)
        self._lock = threading.Lock()

    def landmarks(self, crop: Image.Image) -> np.ndarray:
        """``(468, 3)`` landmarks of a face crop, x and y in the crop's 192-pixel frame."""
        image = crop.convert("RGB").resize((MESH_INPUT_SIZE, MESH_INPUT_SIZE), Image.BILINEAR)
        tensor = (np.asarray(image, dtype=np.float32) / 255.0)[None]
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._points)
        return raw.reshape(MESH_POINTS, 3).astype(np.float32)


_meshes: dict[str, FaceMesh] = {}
_meshes_lock = threading.Lock()


def face_mesh(path: str | os.PathLike[str] | None = None) -> FaceMesh:
    """The process-wide :class:`FaceMesh` for ``path`` (default :func:`face_mesh_model_path`)."""
    resolved = Path(path).expanduser() if path else face_mesh_model_path()
    with _meshes_lock:
        if str(resolved) not in _meshes:
            _meshes[str(resolved)] = FaceMesh(resolved)
        return _meshes[str(resolved)]


def _dist(points: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(points[a, :2] - points[b, :2]))


def action_measures(points: np.ndarray) -> dict[str, float]:
    """The :data:`ACTIONS` of one face's landmarks, each over the inter-ocular distance."""
    scale = max(_dist(points, *_EYE_OUTER), 1e-6)
    eyes = [
        _dist(points, upper, lower) / max(_dist(points, outer, inner), 1e-6)
        for outer, inner, upper, lower in _EYES.values()
    ]
    return {
        "brow_lowering": float(np.mean([_dist(points, a, b) for a, b in _BROW_MID_TO_LID])) / scale,
        "brow_furrow": _dist(points, *_BROW_INNER) / scale,
        "eye_squeeze": float(np.mean(eyes)),
        "nasolabial_furrow": float(np.mean([_dist(points, a, b) for a, b in _ALA_TO_MOUTH_CORNER])) / scale,
        "lips_open": _dist(points, *_LIPS_INNER) / scale,
        "mouth_stretch_horizontal": _dist(points, *_MOUTH_CORNERS) / scale,
        "mouth_stretch_vertical": _dist(points, *_LIPS_OUTER) / scale,
    }


_PAIRS = np.array([(i, j) for i in range(len(GEOMETRY_POINTS)) for j in range(i + 1, len(GEOMETRY_POINTS))])


def action_features(points: np.ndarray) -> np.ndarray:
    """The classifier's input: the :data:`ACTIONS` then the pairwise distances of :data:`GEOMETRY_POINTS`,
    all over the inter-ocular distance (float32, ``7 + 780``)."""
    scale = max(_dist(points, *_EYE_OUTER), 1e-6)
    chosen = points[list(GEOMETRY_POINTS), :2]
    pairwise = np.linalg.norm(chosen[_PAIRS[:, 0]] - chosen[_PAIRS[:, 1]], axis=1) / scale
    return np.concatenate([np.array(list(action_measures(points).values())), pairwise]).astype(np.float32)


def crops_action_features(crops: Sequence[Image.Image], *, mesh: FaceMesh | None = None) -> np.ndarray:
    """:func:`action_features` of each crop, ``(n, 787)``."""
    mesh = mesh or face_mesh()
    return np.stack([action_features(mesh.landmarks(crop)) for crop in crops]) if crops else np.zeros((0, 787))


def actions_relative(measures: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Each action's change against the neonate's baseline, as a fraction (``-0.38``: 38% less)."""
    return {k: (measures[k] - baseline[k]) / baseline[k] for k in measures if baseline.get(k)}


def actions_readout(features: np.ndarray, baseline: np.ndarray) -> list[dict[str, float | str]]:
    """The :data:`ACTIONS` of a frame against the baby's baseline, for the nurse, largest change first.

    ``change`` is signed towards pain: ``+0.38`` on ``eye_squeeze`` means the eyes are 38% less
    open than at this baby's rest; ``+0.2`` on ``lips_open`` means the lips are 20% further apart.
    Rows are ``{"action", "label", "change"}``; from the first :data:`ACTIONS` columns of
    :func:`action_features` rows (``features``, ``baseline``).
    """
    rows = []
    for i, (name, (_, pain_sign)) in enumerate(ACTIONS.items()):
        rest = float(baseline[i])
        if abs(rest) < 1e-6:
            continue
        change = (float(features[i]) - rest) / rest
        rows.append(
            {
                "action": name,
                "label": name.replace("_", " "),
                "change": round(-change if pain_sign == "smaller" else change, 4),
            }
        )
    return sorted(rows, key=lambda row: -abs(float(row["change"])))


# --------------------------------------------------------------------------- a servable model

N_FEATURES = len(ACTIONS) + len(GEOMETRY_POINTS) * (len(GEOMETRY_POINTS) - 1) // 2


def actions_spec() -> dict:
    """The crop as plain [0, 1] RGB at 224 px: the mesh features are computed from it, exactly."""
    from inference.preprocess import CROP_SIZE, make_spec

    return make_spec(size=CROP_SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def batch_crops(batch: torch.Tensor) -> list[Image.Image]:
    """A batch of [0, 1] crops (:func:`actions_spec`) back as the PIL crops the face mesh reads."""
    pixels = (batch.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return [Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()) for image in pixels]


class MeshFeatures(nn.Module):
    """Batch of [0, 1] crops (:func:`actions_spec`) -> :func:`action_features` rows (the model's 'backbone')."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(crops_action_features(batch_crops(batch))).to(batch.device)


class Standardise(nn.Module):
    """``(x - mean) / std`` with the training rows' statistics (buffers, saved in the bundle)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class FaceActionsModel(nn.Module):
    """Facial-action features -> standardise -> linear (L2 logistic regression as two logits).

    ``forward`` scores a crop batch centred on the cold-start reference; the baseline path
    (:mod:`inference.baseline`) uses ``backbone`` and ``head`` as it does for PainNet.
    """

    def __init__(self, dim: int = N_FEATURES) -> None:
        super().__init__()
        self.feature_dim = dim
        self.backbone = MeshFeatures()
        self.head = nn.Sequential(Standardise(dim), nn.Linear(dim, 2))
        self.register_buffer("reference", torch.zeros(dim))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(batch) - self.reference)


def face_actions_model(dim: int = N_FEATURES) -> FaceActionsModel:
    """An untrained :class:`FaceActionsModel` (bundle architecture ``face_actions``)."""
    return FaceActionsModel(dim)
