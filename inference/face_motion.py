"""Facial movement against the baby's own resting face: aligned faces and dense optical flow.

Each served face crop is aligned on its eyes and the bridge of the nose (six face-mesh landmarks,
:mod:`inference.face_actions`) to a fixed 64-pixel frame, turned to grey and contrast-normalised
locally (so exposure, a side light and a colour cast cancel). That aligned face, with the seven
named facial actions in front of it, is the frame's *embedding*; the neonate's baseline
(:mod:`inference.baseline`) is the element-wise median of the embeddings of its recent frames: its
resting face. The classifier's input is the dense optical flow (Farneback) from the resting face
to this frame, less its mean (what alignment left over), averaged on a 16 x 16 grid: where and
how the face moved away from rest - eyes squeezed shut, brows pulled down and together, the mouth
stretched. An L2 logistic regression on those 512 numbers gives p(pain).

Why: on the project's planted-signal sets the facial actions of the face mesh alone were not stable
from one set to the next (balanced accuracy 0.84 on one, 0.77 on the same faces with another
seed), while the flow against the baby's own face was (docs/learning.md, "Facial movement").
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from inference.face_actions import (
    ACTIONS,
    MESH_INPUT_SIZE,
    FaceMesh,
    Standardise,
    action_measures,
    actions_spec,
    batch_crops,
    face_mesh,
)

#: Face-mesh landmarks the face is aligned on: outer and inner eye corners, two points of the nose
#: bridge (the planted and the real pain actions move the lids, brows and mouth, not these).
ALIGN_POINTS = (33, 133, 362, 263, 168, 6)
#: Where those points go, in units of the outer-eye-corner distance from the eyes' midpoint: their
#: median position in the served crops of the design set (planted set ``a``, no label read), where
#: faces are seldom quite frontal. A mirror-symmetric template did no better there (docs/learning.md).
TEMPLATE = np.array(
    [[-0.5, 0.0], [-0.21, 0.012], [0.179, 0.018], [0.5, 0.0], [-0.047, -0.039], [-0.053, 0.051]], dtype=np.float32
)
FACE_SIZE = 64
EYE_DISTANCE = 32.0
EYE_ROW = 24.0
#: Local contrast normalisation: Gaussian of this sigma (pixels of the aligned face) for mean and spread.
CONTRAST_SIGMA = 4.0
FLOW_WINDOW = 9
FLOW_GRID = 16
N_ACTIONS = len(ACTIONS)
N_EMBEDDING = N_ACTIONS + FACE_SIZE * FACE_SIZE
N_FEATURES = FLOW_GRID * FLOW_GRID * 2


def aligned_face(crop: Image.Image, points: np.ndarray) -> np.ndarray:
    """The crop's face aligned to :data:`TEMPLATE`, grey, contrast-normalised, as 0-255 values ``(64, 64)``."""
    grey = np.asarray(crop.convert("L"), dtype=np.float32)
    src = points[list(ALIGN_POINTS), :2].astype(np.float32) * (grey.shape[1] / MESH_INPUT_SIZE)
    dst = (TEMPLATE * EYE_DISTANCE + np.array([FACE_SIZE / 2, EYE_ROW], np.float32)).astype(np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks: scale and shift on the outer eye corners
        matrix, _ = cv2.estimateAffinePartial2D(src[[0, 3]], dst[[0, 3]])
    face = cv2.warpAffine(grey, matrix, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mean = cv2.GaussianBlur(face, (0, 0), CONTRAST_SIGMA)
    detail = face - mean
    spread = np.sqrt(cv2.GaussianBlur(detail * detail, (0, 0), CONTRAST_SIGMA)) + 4.0
    return np.clip(np.rint(detail / spread * 40.0 + 128.0), 0, 255).astype(np.float32)


def motion_embedding(crop: Image.Image, points: np.ndarray) -> np.ndarray:
    """One frame's embedding: the :data:`ACTIONS` (for the nurse's readout) then the aligned face."""
    measures = np.array(list(action_measures(points).values()), dtype=np.float32)
    return np.concatenate([measures, aligned_face(crop, points).reshape(-1)])


def crops_motion_embeddings(crops: Sequence[Image.Image], *, mesh: FaceMesh | None = None) -> np.ndarray:
    """:func:`motion_embedding` of each crop, ``(n, N_EMBEDDING)`` float32."""
    if not crops:
        return np.zeros((0, N_EMBEDDING), np.float32)
    mesh = mesh or face_mesh()
    return np.stack([motion_embedding(crop, mesh.landmarks(crop)) for crop in crops]).astype(np.float32)


def _face(row: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(row[N_ACTIONS:]), 0, 255).astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE)


def motion_features(embeddings: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Flow from each centre's face (the baby at rest) to its embedding's face, less its mean,
    averaged on a :data:`FLOW_GRID` grid: ``(n, N_FEATURES)`` float32 (x then y per cell)."""
    embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, N_EMBEDDING)
    centres = np.broadcast_to(np.asarray(centres, dtype=np.float32).reshape(-1, N_EMBEDDING), embeddings.shape)
    out = np.zeros((len(embeddings), N_FEATURES), np.float32)
    for i, (row, centre) in enumerate(zip(embeddings, centres)):
        flow = cv2.calcOpticalFlowFarneback(_face(centre), _face(row), None, 0.5, 3, FLOW_WINDOW, 3, 5, 1.1, 0)
        flow -= flow.reshape(-1, 2).mean(axis=0)
        out[i] = cv2.resize(flow, (FLOW_GRID, FLOW_GRID), interpolation=cv2.INTER_AREA).reshape(-1)
    return out


# --------------------------------------------------------------------------- a servable model


class MotionEmbedding(nn.Module):
    """Batch of [0, 1] crops (:func:`actions_spec`) -> :func:`motion_embedding` rows (the model's 'backbone')."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(crops_motion_embeddings(batch_crops(batch))).to(batch.device)


class MotionHead(nn.Module):
    """``(embedding, centre)`` -> flow features -> standardise -> linear (two logits).

    ``takes_centre``: :func:`inference.baseline.relative_logits` hands it the centre itself instead
    of ``embedding - centre`` (the flow needs both faces).
    """

    takes_centre = True

    def __init__(self, dim: int = N_FEATURES) -> None:
        super().__init__()
        self.score = nn.Sequential(Standardise(dim), nn.Linear(dim, 2))

    def forward(self, embeddings: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        features = motion_features(embeddings.detach().float().cpu().numpy(), centres.detach().float().cpu().numpy())
        return self.score(torch.from_numpy(features).to(embeddings.device))


class FaceMotionModel(nn.Module):
    """Aligned face -> flow against the neonate's resting face -> L2 logistic regression.

    ``forward`` scores a crop batch against the cold-start reference (the training babies' median
    resting face); the baseline path (:mod:`inference.baseline`) uses ``backbone`` and ``head``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.feature_dim = N_EMBEDDING
        self.backbone = MotionEmbedding()
        self.head = MotionHead()
        self.register_buffer("reference", torch.zeros(N_EMBEDDING))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        embeddings = self.backbone(batch)
        return self.head(embeddings, self.reference.expand_as(embeddings))


def face_motion_model() -> FaceMotionModel:
    """An untrained :class:`FaceMotionModel` (bundle architecture ``face_motion``)."""
    return FaceMotionModel()


__all__ = [
    "ALIGN_POINTS",
    "N_EMBEDDING",
    "N_FEATURES",
    "FaceMotionModel",
    "actions_spec",
    "aligned_face",
    "crops_motion_embeddings",
    "face_motion_model",
    "motion_features",
]
