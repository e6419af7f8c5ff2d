"""Model bundles: round trip, hash pinning, refusal of broken or malicious files, caching."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import inference.bundle as bundle_module
from inference.bundle import BundleError, LoadedModel, clear_cache, load_bundle, read_bundle, save_bundle, sha256_file
from inference.painnet import PainNet


def _crops(astronaut: Image.Image) -> list[Image.Image]:
    return [astronaut.crop((150, 30, 300, 200)), astronaut.crop((0, 0, 256, 256)), astronaut]


def _metadata(**extra: object) -> dict[str, object]:
    return {"name": "unit-test", "version": "1", "architecture": "painnet", **extra}


@pytest.fixture()
def fer_painnet() -> PainNet:
    torch.manual_seed(11)
    return PainNet("fer_cnn", pretrained=True).eval()


def test_round_trip_gives_the_same_outputs(tmp_path: Path, fer_painnet: PainNet, astronaut: Image.Image) -> None:
    path = tmp_path / "model.pt"
    metrics = {"auc": 0.91, "thresholds": [{"t": i / 1000, "tpr": 1 - i / 1000} for i in range(1000)]}
    sha = save_bundle(path, model=fer_painnet, metadata=_metadata(metrics=metrics, temperature=1.0))
    assert sha == sha256_file(path)
    loaded = load_bundle(path, expected_sha256=sha)
    assert isinstance(loaded, LoadedModel)
    assert loaded.sha256 == sha
    assert not loaded.module.training
    assert loaded.device == torch.device("cpu")
    assert loaded.metadata["metrics"] == metrics
    assert loaded.metadata["backbone"] == "fer_cnn"
    assert loaded.metadata["preprocessing"]["input_size"] == 48
    assert loaded.metadata["classes"] == ["nonpain", "pain"]
    assert loaded.metadata["is_bootstrap"] is False
    crops = _crops(astronaut)
    with torch.inference_mode():
        direct = torch.softmax(fer_painnet(loaded.to_tensor(crops)), dim=1).numpy()
    got = loaded.predict_proba(crops)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, direct, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_predict_proba_batches_and_handles_empty_input(
    painnet_bundle: tuple[Path, str], astronaut: Image.Image
) -> None:
    path, sha = painnet_bundle
    loaded = load_bundle(path, expected_sha256=sha)
    crops = _crops(astronaut) * 3
    full = loaded.predict_proba(crops)
    assert loaded.max_batch == bundle_module.DEFAULT_MAX_BATCH_CPU
    loaded.max_batch = 2
    try:
        chunked = loaded.predict_proba(crops)
    finally:
        loaded.max_batch = bundle_module.DEFAULT_MAX_BATCH_CPU
    np.testing.assert_allclose(full, chunked, atol=1e-5)
    assert loaded.predict_proba([]).shape == (0, 2)


def test_temperature_softens_probabilities(tmp_path: Path, fer_painnet: PainNet, astronaut: Image.Image) -> None:
    path = tmp_path / "warm.pt"
    save_bundle(path, model=fer_painnet, metadata=_metadata(temperature=3.0))
    loaded = load_bundle(path)
    logits = loaded.predict_logits(_crops(astronaut))
    expected = torch.softmax(torch.from_numpy(logits) / 3.0, dim=1).numpy()
    np.testing.assert_allclose(loaded.predict_proba(_crops(astronaut)), expected, atol=1e-6)


def test_saving_is_deterministic_and_atomic(tmp_path: Path, fer_painnet: PainNet) -> None:
    meta = _metadata(created_at="2025-02-03T04:05:06+00:00")
    first = save_bundle(tmp_path / "a.pt", model=fer_painnet, metadata=meta)
    second = save_bundle(tmp_path / "other-name.pt", model=fer_painnet, metadata=meta)
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "other-name.pt"]  # no temp files left


def test_hash_mismatch_refuses_to_serve(painnet_bundle: tuple[Path, str]) -> None:
    path, sha = painnet_bundle
    wrong = "0" * 64
    with pytest.raises(BundleError, match="expected " + wrong):
        load_bundle(path, expected_sha256=wrong)
    load_bundle(path, expected_sha256=sha.upper())  # case-insensitive hex is fine
    with pytest.raises(BundleError, match="refusing"):
        load_bundle(path, expected_sha256=wrong)  # also when the model is already cached


def test_truncated_or_corrupt_bundle_is_refused(tmp_path: Path, painnet_bundle: tuple[Path, str]) -> None:
    path, _ = painnet_bundle
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(BundleError, match="cannot load model bundle"):
        load_bundle(truncated)
    # A broken zip directory (the end of the file) cannot be parsed at all.
    broken = tmp_path / "broken-directory.pt"
    broken.write_bytes(data[:-64] + b"\x00" * 64)
    with pytest.raises(BundleError, match="cannot load model bundle"):
        load_bundle(broken)


def test_silently_corrupted_weights_are_caught_by_the_hash(tmp_path: Path, painnet_bundle: tuple[Path, str]) -> None:
    # Zeroed bytes inside tensor data still unzip and unpickle: only the pinned hash
    # notices, which is why callers pass expected_sha256.
    path, sha = painnet_bundle
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\x00" * 64
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="refusing to serve"):
        load_bundle(corrupt, expected_sha256=sha)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a bundle at all")
    with pytest.raises(BundleError, match="cannot load"):
        load_bundle(garbage)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "absent.pt")


def test_plain_state_dict_is_not_a_bundle(tmp_path: Path, fer_painnet: PainNet) -> None:
    path = tmp_path / "weights.pt"
    torch.save(fer_painnet.state_dict(), path)
    with pytest.raises(BundleError, match="not a NeoPain model bundle"):
        load_bundle(path)


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path: Path, fer_painnet: PainNet) -> None:
    path = tmp_path / "mislabelled.pt"
    save_bundle(path, model=fer_painnet, metadata=_metadata())
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["metadata"]["backbone"] = "mobilenet_v2"
    torch.save(payload, path)
    with pytest.raises(BundleError, match="do not fit"):
        load_bundle(path)


class _Exploit:
    """Pickles to a call that creates a marker file: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_pickled_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "neopain-model-bundle", "payload": _Exploit(marker)}, path)
    with pytest.raises(BundleError, match="cannot load"):
        load_bundle(path)
    assert not marker.exists()


def test_it_loads_with_weights_only_on_cpu(monkeypatch: pytest.MonkeyPatch, painnet_bundle: tuple[Path, str]) -> None:
    calls: list[dict[str, object]] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bundle_module.torch, "load", spy)
    clear_cache()
    read_bundle(painnet_bundle[0])
    assert calls and all(c.get("weights_only") is True and c.get("map_location") == "cpu" for c in calls)


def test_models_are_cached_by_path_and_hash(tmp_path: Path, fer_painnet: PainNet) -> None:
    path = tmp_path / "cached.pt"
    first_sha = save_bundle(path, model=fer_painnet, metadata=_metadata(version="1"))
    first = load_bundle(path)
    assert load_bundle(path) is first
    assert load_bundle(str(path)) is first
    second_sha = save_bundle(path, model=fer_painnet, metadata=_metadata(version="2"))
    assert second_sha != first_sha
    second = load_bundle(path)
    assert second is not first
    assert second.version == "2" and second.sha256 == second_sha


def test_metadata_is_validated(tmp_path: Path, fer_painnet: PainNet) -> None:
    with pytest.raises(ValueError, match="lacks name"):
        save_bundle(tmp_path / "x.pt", model=fer_painnet, metadata={"version": "1", "architecture": "painnet"})
    with pytest.raises(ValueError, match="architecture"):
        save_bundle(tmp_path / "x.pt", model=fer_painnet, metadata=_metadata(architecture="vgg"))
    with pytest.raises(ValueError, match="JSON"):
        save_bundle(tmp_path / "x.pt", model=fer_painnet, metadata=_metadata(metrics={"fn": print}))
    with pytest.raises(ValueError, match="temperature"):
        save_bundle(tmp_path / "x.pt", model=fer_painnet, metadata=_metadata(temperature=0))
    assert not (tmp_path / "x.pt").exists()
