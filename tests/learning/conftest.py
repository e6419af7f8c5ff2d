"""Fixtures of the learning-loop tests: a small planted-signal dataset and a shared crop cache."""

from __future__ import annotations

import json
import zipfile

import pytest

from tests.learning.planted import planted_dataset_write
from tests.support import TEST_CACHE, package_archive

#: Small enough for 2 CPU cores, big enough for LOSOCV (6 subjects, 3 pain + 5 nonpain each).
SUBJECTS, PAIN, NONPAIN = 6, 3, 5

#: The fast training path the tests use: frozen backbone, cached embeddings, a higher rate
#: than the paper's 1e-5 so a dozen epochs converge.
FAST = [
    "--freeze-backbone",
    "--lr",
    "1e-3",
    "--epochs",
    "15",
    "--patience",
    "5",
    "--augment-views",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """``<tmp>/<subject>/<pain|nonpain>/*.png``: real face pixels, a dark band over the mouth for pain."""
    return planted_dataset_write(tmp_path_factory.mktemp("planted"), subjects=SUBJECTS, pain=PAIN, nonpain=NONPAIN)


@pytest.fixture(scope="session")
def crop_cache(tmp_path_factory):
    """One face-crop cache for the session, so only the first test pays for detection."""
    return tmp_path_factory.mktemp("crop-cache")


def last_json_line(text: str) -> dict:
    """The contract: with --json the last line of stdout is one JSON object."""
    return json.loads(text.strip().splitlines()[-1])


#: The threshold figures a model's metrics carry for the admin page. Written out here rather than
#: taken from annotations.learning.THRESHOLD_METRIC_KEYS, so a figure the analysis stops producing
#: fails the tests instead of dropping out of the expectation with it.
THRESHOLD_FIGURES = (
    "auc",
    "sensitivity",
    "specificity",
    "aurc",
    "ece",
    "ece_temperature_scaled",
    "temperature",
    "thresholds",
    "risk_coverage",
    "guarantee",
)


def assert_threshold_figures(metrics: dict) -> None:
    """``metrics`` has every threshold figure and a guarantee that states its terms."""
    for key in THRESHOLD_FIGURES:
        assert key in metrics, key
    assert {"alpha", "threshold", "n_calibration", "expected_manual_share", "method"} <= set(metrics["guarantee"])


@pytest.fixture(scope="session")
def mesh_model():
    """The face-mesh model: where scripts/face_mesh_fetch.sh put it, else out of the wheel into the test cache."""
    from inference.face_actions import face_mesh_model_path

    path = face_mesh_model_path()
    if path.is_file():
        return path
    target = TEST_CACHE / "face_landmark.tflite"
    if not target.is_file():
        wheel = package_archive("mediapipe==0.10.21", pattern="mediapipe-0.10.21-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read("mediapipe/modules/face_landmark/face_landmark.tflite"))
    return target


@pytest.fixture(scope="session")
def astronaut_crop():
    from PIL import Image
    from skimage import data

    from inference.detect import get_detector, select_face
    from inference.preprocess import crop_face, letterbox

    image = Image.fromarray(data.astronaut())
    face = select_face(get_detector("retinaface").detect(image), image.size)
    return letterbox(crop_face(image, face), 224, (0, 0, 0))
