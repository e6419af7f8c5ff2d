"""Runtime choices read from the environment: threads, device, data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.runtime import available_cpus, data_dir, inference_threads, resolve_device


def test_threads_default_to_the_cpus_we_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEOPAIN_TORCH_THREADS", raising=False)
    assert inference_threads() == available_cpus() >= 1
    monkeypatch.setenv("NEOPAIN_TORCH_THREADS", "1")
    assert inference_threads() == 1


@pytest.mark.parametrize("value", ["two", "0", "-3"])
def test_bad_thread_settings_fail_loudly(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NEOPAIN_TORCH_THREADS", value)
    with pytest.raises(ValueError, match="NEOPAIN_TORCH_THREADS"):
        inference_threads()


def test_device_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEOPAIN_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("NEOPAIN_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEOPAIN_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.delenv("NEOPAIN_DATA_DIR")
    assert data_dir() == Path("var")
