"""Process-level runtime choices shared by every inference module: device, threads, paths.

Kept in one place so a Celery worker, the CLI and the benchmark make the same choices.
Environment variables read here:

* ``NEOPAIN_DEVICE``: force ``cpu`` or ``cuda[:N]``; default picks CUDA when available.
* ``NEOPAIN_TORCH_THREADS``: intra-op threads for torch and onnxruntime; default is the
  number of CPUs this process may use. Set it to ``cores // worker_concurrency`` when a
  Celery worker runs several processes, or they will oversubscribe the cores.
* ``NEOPAIN_DATA_DIR``: where built models live (default ``./var``).
* ``NEOPAIN_CLASSIFIER_PRECISION``: ``bf16`` (autocast) or ``fp32`` for the classifier on CUDA;
  default ``bf16`` there (p(pain) within 0.005 of fp32: scripts/bench_gpu.py). CPU is always fp32.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_threads_lock = threading.Lock()
_threads_configured: int | None = None


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity where exposed)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def inference_threads() -> int:
    """Intra-op thread count: ``NEOPAIN_TORCH_THREADS`` or all CPUs available to the process."""
    raw = os.environ.get("NEOPAIN_TORCH_THREADS", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError as exc:
            raise ValueError(f"NEOPAIN_TORCH_THREADS must be an integer, got {raw!r}") from exc
        if value < 1:
            raise ValueError(f"NEOPAIN_TORCH_THREADS must be >= 1, got {value}")
        return value
    return available_cpus()


def configure_threads() -> int:
    """Set torch's intra-op threads once per process and return the count.

    Called lazily by model and detector loaders rather than at import, so importing the
    package never changes the host process's threading.
    """
    global _threads_configured
    with _threads_lock:
        if _threads_configured is None:
            threads = inference_threads()
            torch.set_num_threads(threads)
            _threads_configured = threads
            logger.debug("torch intra-op threads set to %d", threads)
        return _threads_configured


def threads_set(threads: int) -> int:
    """Set torch's intra-op threads to ``threads`` now (a training command's ``--threads``)."""
    global _threads_configured
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    with _threads_lock:
        torch.set_num_threads(threads)
        _threads_configured = threads
    return threads


def ort_session_options() -> object:
    """ONNX Runtime session options shared by the face detector and the classifier's trunk.

    ``NEOPAIN_TORCH_THREADS`` intra-op threads and no spinning: ORT's pool spins after each run by
    default, and the next stage's threads (torch, or the other session) run right after on the same
    cores; spinning made them 10-35x slower on 2 CPUs (measured).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = inference_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Explicit device if given, else ``NEOPAIN_DEVICE``, else CUDA when available, else CPU."""
    if device is None:
        device = os.environ.get("NEOPAIN_DEVICE", "").strip() or None
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {resolved} requested but CUDA is not available")
    return resolved


PRECISIONS = ("bf16", "fp32")


def classifier_precision(device: torch.device, precision: str | None = None) -> str:
    """``bf16`` or ``fp32``: ``precision``, else ``NEOPAIN_CLASSIFIER_PRECISION``, else bf16 on CUDA; fp32 on CPU."""
    chosen = (precision or os.environ.get("NEOPAIN_CLASSIFIER_PRECISION", "")).strip().lower()
    if chosen and chosen not in PRECISIONS:
        raise ValueError(f"NEOPAIN_CLASSIFIER_PRECISION must be one of {', '.join(PRECISIONS)}, got {chosen!r}")
    if device.type != "cuda":
        return "fp32"
    return chosen or "bf16"


def data_dir() -> Path:
    """Root for models and caches built at run time: ``NEOPAIN_DATA_DIR`` or ``./var``."""
    return Path(os.environ.get("NEOPAIN_DATA_DIR", "var")).expanduser()
