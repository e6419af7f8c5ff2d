"""The bootstrap model: an honest, shipped-weights-only verdict before any neonatal data exists.

It reads PyEmotion's facial-expression CNN and reports the share of negative-affect
expressions (anger, disgust, fear, sadness) as p(pain): a facial-grimace proxy. It was
never trained or evaluated on neonates and is not calibrated. Its softmax temperature is
set so that its confidence never exceeds :data:`BOOTSTRAP_MAX_CONFIDENCE` (0.58); with
the review threshold above that (the paper operates at 0.6) every case goes to a nurse.
It exists so the product works end to end on day one while the unit collects
NIPS-labelled frames to train its own PainNet.

The bundle is byte-for-byte reproducible: same torch version + same PyEmotion weights
give the same file and therefore the same sha256.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import torch

from inference.bundle import save_bundle, sha256_file
from inference.fer import (
    FER_CLASSES,
    FER_INPUT_SIZE,
    FER_MEAN,
    FER_STD,
    NEGATIVE_AFFECT,
    FerProxy,
    pyemotion_weights_path,
)
from inference.painnet import CLASSES
from inference.preprocess import CROP_SIZE, make_spec
from inference.runtime import data_dir

BOOTSTRAP_NAME = "bootstrap-fer-proxy"
BOOTSTRAP_VERSION = "1.0.0"
BOOTSTRAP_FILENAME = f"{BOOTSTRAP_NAME}.pt"
#: Fixed, so rebuilding the bundle yields identical bytes (the date this recipe was fixed).
BOOTSTRAP_CREATED_AT = "2025-01-01T00:00:00+00:00"
#: Clamp on the negative-affect mass inside the module (keeps logits finite).
BOOTSTRAP_EPS = 1e-3
#: The pipeline crops with a 20% margin; PyEmotion was trained on tight face boxes and is
#: unstable on wide ones (measured on posed photos), so the model keeps the central part
#: of the crop that a 5% margin would have given.
BOOTSTRAP_CENTER_CROP = round((1 + 2 * 0.05) / (1 + 2 * 0.2), 4)
#: Highest confidence the bootstrap model may report (a ceiling, not a calibration). It
#: sits below the paper's 0.6 operating threshold for manual assessment, so at that
#: threshold every bootstrap verdict goes to a nurse while p(pain) still orders the queue.
BOOTSTRAP_MAX_CONFIDENCE = 0.58

_build_lock = threading.Lock()


def bootstrap_temperature(max_confidence: float = BOOTSTRAP_MAX_CONFIDENCE, eps: float = BOOTSTRAP_EPS) -> float:
    """Temperature T with softmax([log(1-m), log(m)] / T) <= ``max_confidence`` for m in [eps, 1-eps]."""
    if not 0.5 < max_confidence < 1.0:
        raise ValueError("max_confidence must lie in (0.5, 1)")
    return math.log((1 - eps) / eps) / math.log(max_confidence / (1 - max_confidence))


def bootstrap_metadata() -> dict[str, object]:
    """Metadata that says exactly what the bootstrap model is and is not."""
    return {
        "name": BOOTSTRAP_NAME,
        "version": BOOTSTRAP_VERSION,
        "architecture": "fer_proxy",
        "backbone": "pyemotion_fer_cnn",
        "classes": list(CLASSES),
        "preprocessing": make_spec(
            size=CROP_SIZE,
            center_crop=BOOTSTRAP_CENTER_CROP,
            input_size=FER_INPUT_SIZE,
            mean=FER_MEAN,
            std=FER_STD,
            grayscale=True,
        ),
        "temperature": bootstrap_temperature(),
        "created_at": BOOTSTRAP_CREATED_AT,
        "is_bootstrap": True,
        "description": (
            "Bootstrap facial-grimace proxy, NOT a trained pain model. p(pain) is the share of "
            "negative-affect expressions (anger, disgust, fear, sadness) predicted by PyEmotion's "
            "adult facial-expression CNN on the 48x48 grey face crop. Not trained on neonates, "
            "not evaluated on neonates, uncalibrated. Its temperature caps confidence at "
            f"{BOOTSTRAP_MAX_CONFIDENCE:.2f}, below the paper's 0.6 manual-assessment threshold, so "
            "that it routes cases to nurses. Use it only until the unit has trained and registered "
            "its own PainNet on NIPS-labelled frames."
        ),
        "training_data": {
            "neonatal_images": 0,
            "source": "PyEmotion 1.0.0 pretrained FER CNN (weights as shipped; training data not documented by its author, class order is FER2013's)",
            "fer_classes": list(FER_CLASSES),
            "negative_affect_classes": list(NEGATIVE_AFFECT),
        },
        "metrics": {
            "evaluated_on_neonates": False,
            "calibrated": False,
            "max_confidence": BOOTSTRAP_MAX_CONFIDENCE,
            "mass_clamp_eps": BOOTSTRAP_EPS,
        },
    }


def build_bootstrap_bundle(path: str | os.PathLike[str]) -> str:
    """Build the bootstrap bundle at ``path`` from PyEmotion's shipped weights; return its sha256."""
    if not pyemotion_weights_path().is_file():
        raise FileNotFoundError(f"PyEmotion weights missing at {pyemotion_weights_path()}")
    model = FerProxy(pretrained=True, eps=BOOTSTRAP_EPS).eval()
    with torch.no_grad():
        return save_bundle(path, model=model, metadata=bootstrap_metadata())


def bootstrap_bundle_path(*, build: bool = True) -> Path:
    """``$NEOPAIN_DATA_DIR/models/bootstrap-fer-proxy.pt``, built on first use if ``build``."""
    path = data_dir() / "models" / BOOTSTRAP_FILENAME
    if build and not path.is_file():
        with _build_lock:
            if not path.is_file():
                build_bootstrap_bundle(path)
    return path


def bootstrap_sha256() -> str:
    """sha256 of the bootstrap bundle at its default location (building it if missing)."""
    return sha256_file(bootstrap_bundle_path())
