"""Detector weights are checked before registration: nothing in them is executed (issue 16, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.weights_check import UnsafeWeights, detector_weights_check, pickle_globals
from tests.support import RunsCodeWhenUnpickled, save_tiny_onnx


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_that_would_create_a_file_is_refused_and_never_run(tmp_path, protocol):
    marker = tmp_path / "pwned"
    weights = tmp_path / "yolo-face.pt"
    torch.save({"model": RunsCodeWhenUnpickled(marker), "epoch": 1}, weights, pickle_protocol=protocol)

    with pytest.raises(UnsafeWeights, match=r"would import (posix|os|nt)\.system when loaded"):
        detector_weights_check(weights)
    assert not marker.exists()


def test_a_legacy_bare_pickle_is_refused(tmp_path):
    weights = tmp_path / "old.pt"
    torch.save({"w": torch.zeros(2)}, weights, _use_new_zipfile_serialization=False)

    with pytest.raises(UnsafeWeights, match="neither ONNX nor a PyTorch zip checkpoint"):
        detector_weights_check(weights)


def test_an_ultralytics_checkpoint_is_accepted(tmp_path):
    from inference.detect import import_ultralytics_offline

    import_ultralytics_offline()
    from ultralytics.nn.tasks import DetectionModel

    weights = tmp_path / "best.pt"
    # What ultralytics' trainer writes: the model (half precision) and plain data beside it.
    torch.save({"epoch": 0, "model": DetectionModel("yolov8n.yaml", nc=1, verbose=False).half(),
                "train_args": {"imgsz": 64}, "date": "2026-12-04"}, weights)

    assert detector_weights_check(weights) == "torch"
    assert "ultralytics.nn.tasks.DetectionModel" in pickle_globals(_data_pkl(weights))


def _data_pkl(path: Path) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def test_an_onnx_graph_is_accepted_and_garbage_named_onnx_is_not(tmp_path):
    good = save_tiny_onnx(tmp_path / "face.onnx")
    bad = tmp_path / "fake.onnx"
    bad.write_bytes(b"\x80\x02cposix\nsystem\n")

    assert detector_weights_check(good) == "onnx"
    with pytest.raises(UnsafeWeights, match="not a valid ONNX model"):
        detector_weights_check(bad)
