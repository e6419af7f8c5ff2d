#!/usr/bin/env python
"""Benchmark the inference pipeline against a naive one-image-at-a-time baseline.

For each device (CPU, and CUDA when present), each model (the bootstrap FER proxy and a
PainNet mobilenet_v2 bundle) and each batch size (1, 8, 32) it pushes the same frames
through :class:`inference.pipeline.Pipeline` and prints frames/s and the p50/p95 of the
per-frame stage timings (decode, detect, classify). The naive baseline, run in the same
process on the same frames, loads the model once but then does everything one image at a
time: decode, detect, crop, a fresh PIL->tensor transform per call, an unbatched forward
on a plainly loaded (contiguous-format) module.

Frames are real photos: scikit-image's public-domain astronaut placed in 640x480
bedside-camera-sized JPEGs at several scales, positions and exposures.

Shared machines are noisy, so the configurations are interleaved: every chunk of 32
frames goes through each configuration in turn (rotating the order), and each
configuration's frames/s is its total frames over its total time. Load that comes and
goes is then spread over all configurations instead of landing on one.

The last line is machine-readable::

    bench: pipeline_fps=... naive_fps=... speedup=...

for the PainNet mobilenet_v2 model at the largest batch size on the first device
(CUDA if present, else CPU).

Usage: ``python scripts/bench_inference.py [--quick] [--frames N] [--rounds R] [--batch-sizes 1,8,32]``
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Before torch loads OpenMP: idle threads sleep instead of spinning, so torch and
# onnxruntime (and any neighbour process) do not steal each other's cores between stages.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit

from inference.bundle import build_module, load_bundle, read_bundle
from inference.decode import decode_image
from inference.detect import DEFAULT_MARGIN, get_detector, select_face
from inference.pipeline import Pipeline
from inference.preprocess import crop_face, eval_transform, letterbox
from inference.runtime import configure_threads

STAGES = ("decode", "detect", "classify")
CHUNK = 32


@dataclass
class Tally:
    """Accumulated time and per-frame stage timings of one configuration."""

    device: str
    model: str
    batch: str
    frames: int = 0
    seconds: float = 0.0
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGES})

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def add(self, seconds: float, stages: list[tuple[float, float, float]]) -> None:
        self.seconds += seconds
        self.frames += len(stages)
        for values in stages:
            for stage, value in zip(STAGES, values):
                self.stage_ms[stage].append(value)

    def row(self) -> str:
        cells = [f"{self.device:<5}", f"{self.model:<22}", f"{self.batch:>5}", f"{self.frames:>6}", f"{self.fps:>8.1f}"]
        for stage in STAGES:
            values = np.asarray(self.stage_ms[stage])
            cells.append(f"{np.percentile(values, 50):>7.2f}/{np.percentile(values, 95):<7.2f}")
        return " ".join(cells)


HEADER = f"{'dev':<5} {'model':<22} {'batch':>5} {'frames':>6} {'fps':>8} " + " ".join(
    f"{stage + ' p50/p95 ms':<15}" for stage in STAGES
)


def make_frames(count: int) -> list[bytes]:
    """Bedside-sized JPEGs of a real face at varied scale, position and exposure."""
    from skimage import data as skdata

    face = Image.fromarray(skdata.astronaut())
    rng = np.random.default_rng(0)
    variants: list[bytes] = []
    for i in range(min(count, 16)):
        side = int(rng.integers(260, 470))
        canvas = Image.new("RGB", (640, 480), tuple(int(v) for v in rng.integers(20, 90, 3)))
        tile = face.resize((side, side))
        tile = ImageEnhance.Brightness(tile).enhance(float(rng.uniform(0.6, 1.3)))
        canvas.paste(tile, (int(rng.integers(0, 640 - side + 1)), int(rng.integers(0, max(1, 480 - side + 1)))))
        if i % 5 == 4:
            canvas = canvas.rotate(float(rng.uniform(-12, 12)), fillcolor=(40, 40, 40))
        buffer = io.BytesIO()
        canvas.save(buffer, format="JPEG", quality=90)
        variants.append(buffer.getvalue())
    return [variants[i % len(variants)] for i in range(count)]


def pipeline_runner(pipeline: Pipeline, batch: int, device: str) -> Callable[[list[bytes]], tuple[float, list]]:
    """Runs a chunk through the pipeline in batches of ``batch``; returns (seconds, stage timings)."""

    def run(chunk: list[bytes]) -> tuple[float, list[tuple[float, float, float]]]:
        stages: list[tuple[float, float, float]] = []
        start = time.perf_counter()
        for offset in range(0, len(chunk), batch):
            for outcome in pipeline.run_batch(chunk[offset : offset + batch]):
                timings = outcome.timings_ms
                stages.append((timings["decode"], timings["detect"], timings["classify"]))
        _sync(device)
        return time.perf_counter() - start, stages

    return run


class NaiveBaseline:
    """One image at a time, PIL->tensor per call, no batching, plainly loaded module."""

    def __init__(self, bundle_path: Path, detector_name: str, device: str) -> None:
        payload, _ = read_bundle(bundle_path)
        self.metadata = payload["metadata"]
        module = build_module(self.metadata)
        module.load_state_dict(payload["state_dict"])
        self.module = module.eval().to(device)
        self.detector = get_detector(detector_name, device=device)
        self.device = device

    def one(self, data: bytes) -> tuple[float, float, float]:
        spec = self.metadata["preprocessing"]
        t0 = time.perf_counter()
        image = decode_image(data)
        t1 = time.perf_counter()
        face = select_face(self.detector.detect(image), image.size, DEFAULT_MARGIN)
        t2 = time.perf_counter()
        if face is not None:
            crop = letterbox(crop_face(image, face), spec["size"], spec["fill"])
            tensor = eval_transform(spec)(crop).unsqueeze(0).to(self.device)
            with torch.inference_mode():
                torch.softmax(self.module(tensor) / float(self.metadata["temperature"]), dim=1).cpu()
        _sync(self.device)
        t3 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3

    def run(self, chunk: list[bytes]) -> tuple[float, list[tuple[float, float, float]]]:
        start = time.perf_counter()
        stages = [self.one(data) for data in chunk]
        return time.perf_counter() - start, stages


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=None, help="frames per round (default 64, quick 32)")
    parser.add_argument("--rounds", type=int, default=None, help="passes over the frames (default 2, quick 1)")
    parser.add_argument("--quick", action="store_true", help="fewer frames and rounds, for a smoke run")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--detector", default="retinaface", choices=("retinaface",))
    parser.add_argument("--devices", default=None, help="comma list; default cuda (when available) then cpu")
    args = parser.parse_args(argv)

    n_frames = args.frames or (32 if args.quick else 64)
    rounds = args.rounds or (1 if args.quick else 2)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    devices = args.devices.split(",") if args.devices else (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
    threads = configure_threads()
    frames = make_frames(n_frames)
    print(
        f"# torch {torch.__version__}, {threads} intra-op threads, devices {devices}, {n_frames} 640x480 JPEG "
        f"frames x {rounds} rounds per configuration, interleaved in chunks of {CHUNK}, "
        f"detector {args.detector}, load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    tallies: list[Tally] = []
    with tempfile.TemporaryDirectory(prefix="neopain-bench-") as folder:
        bundles = benchkit.timing_bundles(Path(folder))
        print(HEADER, flush=True)
        for device in devices:
            detector = get_detector(args.detector, device=device)
            for label, path in bundles.items():
                pipeline = Pipeline(load_bundle(path, device=device), detector)
                naive = NaiveBaseline(path, args.detector, device)
                configs: list[tuple[Tally, Callable[[list[bytes]], tuple[float, list]]]] = [
                    (Tally(device, label, str(b)), pipeline_runner(pipeline, b, device)) for b in batch_sizes
                ]
                configs.append((Tally(device, label, "naive"), naive.run))
                for _, run in configs:  # warm-up: allocator, kernels, ORT arena
                    run(frames[: max(batch_sizes)])
                chunk_index = 0
                for _ in range(rounds):
                    for start in range(0, len(frames), CHUNK):
                        chunk = frames[start : start + CHUNK]
                        shift = chunk_index % len(configs)
                        for tally, run in configs[shift:] + configs[:shift]:
                            tally.add(*run(chunk))
                        chunk_index += 1
                for tally, _ in configs:
                    tallies.append(tally)
                    print(tally.row(), flush=True)

    head_device, head_model, head_batch = devices[0], "painnet-mobilenet_v2", str(max(batch_sizes))
    piped = next(t for t in tallies if (t.device, t.model, t.batch) == (head_device, head_model, head_batch))
    naive_tally = next(t for t in tallies if (t.device, t.model, t.batch) == (head_device, head_model, "naive"))
    print(
        f"# headline: {head_model} on {head_device}, batch {head_batch} vs naive; load average now {os.getloadavg()[0]:.2f}"
    )
    print(
        f"bench: pipeline_fps={piped.fps:.2f} naive_fps={naive_tally.fps:.2f} speedup={piped.fps / naive_tally.fps:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
