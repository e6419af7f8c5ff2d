"""Model bundles: one file holding a trained model's weights and everything needed to serve it.

A bundle is a ``torch.save`` archive of plain types only::

    {"format": "neopain-model-bundle", "format_version": 1,
     "metadata": {...JSON-able...}, "state_dict": {name: tensor}}

so it loads with ``torch.load(..., weights_only=True)``: no pickled code can run. The
file's sha256 is the model's weights hash; the Django side records it per model version
and passes it back as ``expected_sha256`` so a swapped or corrupted file refuses to serve.

Metadata keys: ``name``, ``version``, ``architecture`` (``painnet`` | ``fer_proxy``),
``backbone``, ``classes``, ``preprocessing`` (see :mod:`inference.preprocess`),
``training_data`` (summary dict), ``metrics`` (dict, any size), ``temperature`` (softmax
calibration, 1.0 = none), ``created_at`` (ISO 8601), ``description``, ``is_bootstrap``.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from inference.painnet import CLASSES, PainNet
from inference.preprocess import PreprocessingSpec, batch_tensor, validate_spec
from inference.runtime import configure_threads, resolve_device

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = "neopain-model-bundle"
BUNDLE_FORMAT_VERSION = 1
ARCHITECTURES = ("painnet", "fer_proxy", "face_actions", "face_motion")
#: Crops per forward pass. On CPU, MobileNetV2 costs the same per image from batch 1 to 8
#: and ~40% more at 32 (activations fall out of cache; measured on 2 cores); on GPU,
#: larger batches keep the device busy.
DEFAULT_MAX_BATCH_CPU = 8
DEFAULT_MAX_BATCH_CUDA = 64
#: Loaded models kept per process; old versions fall out so a worker that has served
#: many model versions does not hold them all in memory.
MODEL_CACHE_SIZE = 4

_REQUIRED_KEYS = ("name", "version", "architecture")
_KEY_ORDER = (
    "name",
    "version",
    "architecture",
    "backbone",
    "classes",
    "is_bootstrap",
    "description",
    "created_at",
    "temperature",
    "preprocessing",
    "training_data",
    "metrics",
)


class BundleError(RuntimeError):
    """A bundle cannot be served: missing, unreadable, malformed or not the expected hash."""


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def normalise_metadata(metadata: Mapping[str, Any], model: nn.Module | None = None) -> dict[str, Any]:
    """Fill defaults, validate and convert metadata to JSON-able plain types."""
    missing = [key for key in _REQUIRED_KEYS if not metadata.get(key)]
    if missing:
        raise ValueError(f"bundle metadata lacks {', '.join(missing)}")
    merged: dict[str, Any] = {
        "classes": list(CLASSES),
        "training_data": {},
        "metrics": {},
        "temperature": 1.0,
        "description": "",
        "is_bootstrap": False,
        **dict(metadata),
    }
    if isinstance(model, PainNet):
        merged.setdefault("backbone", model.backbone_name)
        merged.setdefault("preprocessing", model.preprocessing_spec)
    if "created_at" not in merged or not merged["created_at"]:
        merged["created_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if merged["architecture"] not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {merged['architecture']!r}")
    if merged["architecture"] == "painnet" and not merged.get("backbone"):
        raise ValueError("painnet bundles need a backbone name")
    if "preprocessing" not in merged:
        raise ValueError("bundle metadata lacks a preprocessing spec")
    merged["preprocessing"] = validate_spec(merged["preprocessing"])
    if sorted(merged["classes"]) != sorted(CLASSES):
        raise ValueError(f"classes must be {list(CLASSES)} in some order, got {merged['classes']}")
    temperature = float(merged["temperature"])
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    merged["temperature"] = temperature
    merged["is_bootstrap"] = bool(merged["is_bootstrap"])
    merged["name"], merged["version"] = str(merged["name"]), str(merged["version"])
    # Canonical keys first, in a reading order, then whatever else the trainer stored.
    ordered = {key: merged[key] for key in _KEY_ORDER if key in merged}
    ordered.update({key: value for key, value in merged.items() if key not in ordered})
    try:
        # Round-trip through JSON: proves the metadata is plain data (weights_only can
        # load it) and turns tuples into lists so saved and loaded metadata compare equal.
        return json.loads(json.dumps(ordered))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bundle metadata must be JSON-serialisable: {exc}") from exc


def bundle_bytes(*, model: nn.Module, metadata: Mapping[str, Any]) -> bytes:
    """Serialise ``model`` + ``metadata`` to bundle bytes (deterministic for equal inputs).

    Saved through a buffer, not a path: ``torch.save`` names the archive's root folder
    after the file, which would make identical models hash differently by file name.
    """
    payload = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "metadata": normalise_metadata(metadata, model),
        # clone(): a tensor viewing a larger storage would otherwise save all of it.
        "state_dict": {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_bundle(path: str | os.PathLike[str], *, model: nn.Module, metadata: Mapping[str, Any]) -> str:
    """Write a bundle atomically to ``path`` and return its sha256."""
    data = bundle_bytes(model=model, metadata=metadata)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Atomic replace: a worker loading the bundle never sees a half-written file.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


@dataclass
class LoadedModel:
    """A bundle ready to serve: module in eval mode on ``device`` plus its metadata."""

    metadata: dict[str, Any]
    sha256: str
    module: nn.Module
    device: torch.device
    path: Path
    max_batch: int = DEFAULT_MAX_BATCH_CPU
    #: The conv trunk on ONNX Runtime (:class:`inference.trunk_runtime.OnnxTrunk`), or ``None``: all PyTorch.
    trunk_runner: Any = None
    spec: PreprocessingSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = validate_spec(self.metadata["preprocessing"])

    @property
    def name(self) -> str:
        """Model name from the metadata."""
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        """Model version from the metadata."""
        return str(self.metadata["version"])

    @property
    def temperature(self) -> float:
        """Softmax temperature (calibration); 1.0 means uncalibrated logits are used as-is."""
        return float(self.metadata.get("temperature", 1.0))

    @property
    def classes(self) -> list[str]:
        """Class order of the logits."""
        return list(self.metadata["classes"])

    @property
    def pain_index(self) -> int:
        """Column of p(pain) in :meth:`predict_proba`'s output."""
        return self.classes.index("pain")

    @property
    def is_bootstrap(self) -> bool:
        """True for the FER-proxy bootstrap model (not trained on neonates)."""
        return bool(self.metadata.get("is_bootstrap", False))

    @property
    def runtime(self) -> str:
        """What runs the conv trunk: ``onnxruntime`` or ``torch``."""
        return "onnxruntime" if self.trunk_runner is not None else "torch"

    def to_tensor(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        """Crops -> normalised batch on the model's device, in the format its trunk runs fastest on."""
        batch = batch_tensor(crops, self.spec)
        if batch.shape[1] > 1 and self.trunk_runner is None:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch.to(self.device, non_blocking=True)

    def trunk_activation(self, batch: torch.Tensor) -> torch.Tensor | None:
        """The Grad-CAM layer's activation for ``batch`` when the trunk runs on ONNX Runtime, else ``None``."""
        return self.trunk_runner(batch) if self.trunk_runner is not None else None

    @property
    def flip_tta(self) -> bool:
        """True when the model was trained and evaluated with flip test-time averaging
        (metadata ``test_time_augmentation: "flip"``): its logits are the mean of each crop's
        and its mirror image's, as in the evaluation that chose its threshold."""
        return self.metadata.get("test_time_augmentation") == "flip"

    def logits_of(self, batch: torch.Tensor, *, mirror_average: bool = True) -> torch.Tensor:
        """Logits of a prepared batch (:meth:`to_tensor`), through whichever runtime serves the trunk;
        averaged with the mirrored batch's when the model has :attr:`flip_tta` (and ``mirror_average``)."""
        logits = self._single_logits(batch)
        if mirror_average and self.flip_tta:
            logits = (logits + self._single_logits(batch.flip(-1))) / 2
        return logits

    def _single_logits(self, batch: torch.Tensor) -> torch.Tensor:
        if self.trunk_runner is not None:
            return self.module.forward_from_trunk(self.trunk_runner(batch))
        return self.module(batch)

    def predict_logits(self, crops: Sequence[Image.Image]) -> np.ndarray:
        """Raw logits ``(N, 2)`` in :attr:`classes` order, in chunks of :attr:`max_batch`."""
        if not crops:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.max_batch):
                logits = self.logits_of(self.to_tensor(crops[start : start + self.max_batch]))
                outputs.append(logits.float().cpu())
        return torch.cat(outputs).numpy()

    def predict_proba(self, crops: Sequence[Image.Image]) -> np.ndarray:
        """Class probabilities ``(N, 2)``: softmax(logits / temperature)."""
        logits = torch.from_numpy(self.predict_logits(crops))
        return torch.softmax(logits / self.temperature, dim=1).numpy()


# --------------------------------------------------------------------------- loading

_cache: collections.OrderedDict[tuple[str, str, str], LoadedModel] = collections.OrderedDict()
_hash_cache: dict[str, tuple[tuple[int, int, int], str]] = {}
_cache_lock = threading.RLock()


def _stat_key(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def _cached_sha(path: Path) -> str | None:
    """The file's sha256 if it was hashed before and its size/mtime/inode are unchanged."""
    entry = _hash_cache.get(str(path))
    if entry is not None and entry[0] == _stat_key(path):
        return entry[1]
    return None


def read_bundle(path: str | os.PathLike[str], *, expected_sha256: str | None = None) -> tuple[dict[str, Any], str]:
    """Load and validate a bundle's payload (``weights_only``) -> (payload, sha256)."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise BundleError(f"model bundle not found: {resolved}")
    try:
        stat_before = _stat_key(resolved)
        data = resolved.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read model bundle {resolved}: {exc}") from exc
    # Hash the very bytes we load, so the check cannot race a file swap.
    sha = hashlib.sha256(data).hexdigest()
    _check_hash(resolved, sha, expected_sha256)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (bad zip), EOFError ...
        raise BundleError(f"cannot load model bundle {resolved}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{resolved} is not a NeoPain model bundle (format tag missing)")
    if payload.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{resolved} has unsupported bundle format version {payload.get('format_version')!r}")
    if not isinstance(payload.get("metadata"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise BundleError(f"{resolved} lacks metadata or state_dict")
    try:
        payload["metadata"] = normalise_metadata(payload["metadata"])
    except ValueError as exc:
        raise BundleError(f"{resolved} has invalid metadata: {exc}") from exc
    with _cache_lock:
        _hash_cache[str(resolved)] = (stat_before, sha)
    return payload, sha


def _check_hash(path: Path, actual: str, expected: str | None) -> None:
    if expected is not None and actual.lower() != expected.strip().lower():
        raise BundleError(f"model bundle {path} has sha256 {actual}, expected {expected}; refusing to serve it")


def build_module(metadata: Mapping[str, Any]) -> nn.Module:
    """An untrained module of the bundle's architecture, ready for ``load_state_dict``."""
    architecture = metadata["architecture"]
    if architecture == "painnet":
        return PainNet(str(metadata["backbone"]), pretrained=False)
    if architecture == "fer_proxy":
        from inference.fer import FerProxy

        return FerProxy(pretrained=False)
    if architecture == "face_actions":
        from inference.face_actions import N_FEATURES, face_actions_model

        return face_actions_model(int(metadata.get("feature_dim", N_FEATURES)))
    if architecture == "face_motion":
        from inference.face_motion import face_motion_model

        return face_motion_model()
    raise BundleError(f"unknown architecture {architecture!r}")


def load_bundle(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    device: str | torch.device | None = None,
    max_batch: int | None = None,
) -> LoadedModel:
    """Load a bundle for serving (cached per process by path + sha256 + device).

    ``max_batch`` caps crops per forward pass (default: 8 on CPU, 64 on CUDA); passing
    it also updates an already cached model.

    Raises :class:`BundleError` if the file is missing, is not a valid bundle, cannot be
    loaded with ``weights_only=True``, or its sha256 differs from ``expected_sha256``.
    """
    from inference.trunk_runtime import classifier_runtime, onnx_trunk_for

    resolved = Path(path).expanduser().resolve()
    target = resolve_device(device)
    runtime = classifier_runtime()
    with _cache_lock:
        if resolved.is_file():
            sha = _cached_sha(resolved)
            if sha is not None:
                _check_hash(resolved, sha, expected_sha256)
                cached = _cache.get((str(resolved), sha, str(target), runtime))
                if cached is not None:
                    _cache.move_to_end((str(resolved), sha, str(target), runtime))
                    if max_batch is not None:
                        cached.max_batch = max_batch
                    return cached
        payload, sha = read_bundle(resolved, expected_sha256=expected_sha256)
        configure_threads()
        metadata = payload["metadata"]
        try:
            module = build_module(metadata)
            module.load_state_dict(payload["state_dict"], strict=True)
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(f"weights in {resolved} do not fit {metadata['architecture']}: {exc}") from exc
        module.eval()
        module.requires_grad_(False)
        # channels_last: ~1.6x faster convolutions on CPU (MobileNetV2, measured), fine on GPU.
        module = module.to(target).to(memory_format=torch.channels_last)
        if max_batch is None:
            max_batch = DEFAULT_MAX_BATCH_CUDA if target.type == "cuda" else DEFAULT_MAX_BATCH_CPU
        spec = validate_spec(metadata["preprocessing"])
        trunk_runner = onnx_trunk_for(
            module, device=target, size=int(spec["size"]), label=f"{metadata['name']} {metadata['version']}"
        )
        loaded = LoadedModel(
            metadata=metadata,
            sha256=sha,
            module=module,
            device=target,
            path=resolved,
            max_batch=max_batch,
            trunk_runner=trunk_runner,
        )
        # One throw-away forward: the first call pays for allocator and kernel set-up,
        # which would otherwise show up in the first real frame's classify timing.
        fill = tuple(int(v) for v in loaded.spec["fill"])
        loaded.predict_logits([Image.new("RGB", (loaded.spec["size"],) * 2, fill)])
        key = (str(resolved), sha, str(target), runtime)
        _cache[key] = loaded
        while len(_cache) > MODEL_CACHE_SIZE:
            _cache.popitem(last=False)
        logger.info(
            "loaded model %s %s (sha256 %s) on %s, trunk on %s",
            loaded.name,
            loaded.version,
            sha[:12],
            target,
            loaded.runtime,
        )
        return loaded


def clear_cache() -> None:
    """Forget every cached model and hash (tests, or after replacing files in place)."""
    with _cache_lock:
        _cache.clear()
        _hash_cache.clear()
