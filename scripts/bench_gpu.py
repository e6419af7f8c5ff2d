#!/usr/bin/env python
"""The GPU engine, stage by stage (issue 19): decode -> detect -> crop -> classify, and end to end.

For the bootstrap FER proxy and a PainNet mobilenet_v2, at each batch size (default 32, 128, 512),
on ``--device`` (default CUDA when present), frames/s of

* ``decode``: :func:`inference.tensor_ops.decode_frames` (header checks + hash on the CPU, JPEG on
  the device: nvJPEG on CUDA);
* ``detect``: RetinaFace on PyTorch over the decoded tensors (:meth:`detect_tensors`);
* ``crop``: face choice + ``roi_align`` crop and letterbox;
* ``classify``: normalisation + the classifier's forward pass (bf16 autocast on CUDA);
* ``engine``: :meth:`TensorPipeline.run_stream` over the frames in batches of that size, the next
  batch decoded in a thread while the current one is scored (saliency maps off, as ``engine``;
  ``engine+gradcam`` with them, at the middle batch size);

plus the largest p(pain) difference between fp32 and bf16 on the same crops. Every stage is guarded:
an error or the ``--budget`` running out prints a line and the rest still runs. Figures go to
``--json`` (default ``$OUT/bench_gpu.json`` when ``$OUT`` is set). ``--summary LOG`` prints the
one-line summary of scripts/bench_gpu.sh from that JSON and bench_worker's last line in LOG.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit
import workerkit

ENGINE_GOAL = 3000.0
WORKER_GOAL = 1000.0


class Budget:
    """Wall-clock budget for the whole run: stages are skipped, not started, once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def guarded(figures: dict, key: str, budget: Budget, work: Callable[[], object]) -> object:
    """Run one stage; its error (or a spent budget) is printed and recorded, never raised."""
    if budget.left() <= 0:
        print(f"# {key}: skipped, time budget spent", flush=True)
        figures.setdefault("skipped", []).append(key)
        return None
    try:
        return work()
    except Exception as exc:  # one stage's failure must not cost the other figures
        print(f"# {key}: FAILED {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc(limit=4)
        figures.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
        return None


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, work: Callable[[], object]) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    result = work()
    sync(device)
    return time.perf_counter() - start, result


def cpu_decode(batches: list[list[bytes]], device) -> None:
    """For comparison: libjpeg-turbo (``decode_jpeg`` on the CPU) in 8 threads, then a copy to the device."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    def one(data: bytes):
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB).to(device)

    with ThreadPoolExecutor(8) as pool:
        for batch in batches:
            list(pool.map(one, batch))


def stage_figures(
    pipeline, frames: list[bytes], batch: int, figures: dict, label: str, *, compare_cpu_decode: bool = False
) -> None:
    """Per-stage frames/s at ``batch`` frames per call over ``frames``, recorded under ``figures[label][batch]``."""
    from inference.faces import select_face
    from inference.tensor_ops import crop_letterbox, decode_frames

    device, model, detector = pipeline.device, pipeline.model, pipeline.detector
    batches = [frames[i : i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    total = len(batches) * batch
    row = figures.setdefault(label, {}).setdefault(str(batch), {})
    caps = {"max_pixels": pipeline.max_pixels, "max_bytes": pipeline.max_bytes}
    decode_frames(batches[0], device, **caps)  # warm-up (nvJPEG handles, allocator)

    seconds, decoded = timed(device, lambda: [decode_frames(b, device, **caps) for b in batches])
    row["decode"] = total / seconds
    if compare_cpu_decode:
        row["decode_cpu_8_threads"] = total / timed(device, lambda: cpu_decode(batches, device))[0]
    tensors = [[f.tensor for f in chunk if f.tensor is not None] for chunk in decoded]
    detector.detect_tensors(tensors[0])
    seconds, found = timed(device, lambda: [detector.detect_tensors(t) for t in tensors])
    row["detect"] = total / seconds
    size, fill = int(model.spec["size"]), model.spec["fill"]

    def crop_all() -> list:
        out = []
        for chunk, boxes in zip(tensors, found):
            faces = [
                select_face(b, (int(t.shape[-1]), int(t.shape[-2])), pipeline.margin) for t, b in zip(chunk, boxes)
            ]
            keep = [i for i, face in enumerate(faces) if face is not None]
            if keep:
                out.append(crop_letterbox([chunk[i] for i in keep], [faces[i].as_tuple() for i in keep], size, fill))
        return out

    crop_all()
    seconds, crops = timed(device, crop_all)
    row["crop"] = total / seconds
    faces = sum(int(c.shape[0]) for c in crops)
    row["faces"] = faces
    pipeline.classify_letterboxed(crops[0])
    seconds, _ = timed(device, lambda: [pipeline.classify_letterboxed(c) for c in crops])
    row["classify"] = faces / seconds if seconds > 0 else float("nan")
    row["sum_of_stages"] = 1.0 / sum(1.0 / row[k] for k in ("decode", "detect", "crop", "classify"))
    print(
        f"{label:<22} batch {batch:>4}: decode {row['decode']:8.0f}  detect {row['detect']:8.0f}  crop {row['crop']:8.0f}  "
        f"classify {row['classify']:8.0f} frames/s ({faces} faces of {total} frames); stages in series "
        f"{row['sum_of_stages']:.0f}"
        + (f"; CPU decode (8 threads) {row['decode_cpu_8_threads']:.0f}" if "decode_cpu_8_threads" in row else ""),
        flush=True,
    )


def engine_figures(
    pipeline, frames: list[bytes], batch: int, figures: dict, label: str, *, saliency: bool, jpeg: bool = False
) -> None:
    """End to end through :meth:`run_stream` (prefetching), batches of ``batch``.

    ``jpeg``: also encode each crop's JPEG (the worker's stored copy), as the worker's pipeline does.
    """
    batches = [frames[i : i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    total = len(batches) * batch
    pipeline.saliency = saliency
    pipeline.encode_crops = jpeg
    try:
        for _ in pipeline.run_stream(batches[:1]):
            pass  # warm-up
        seconds, outcomes = timed(pipeline.device, lambda: [o for out in pipeline.run_stream(batches) for o in out])
    finally:
        pipeline.saliency = False
        pipeline.encode_crops = False
    key = "engine+gradcam" if saliency else "engine+jpeg" if jpeg else "engine"
    ok = sum(1 for o in outcomes if o.status == "ok")
    figures.setdefault(label, {}).setdefault(str(batch), {})[key] = total / seconds
    print(f"{label:<22} batch {batch:>4}: {key:<15} {total / seconds:8.0f} frames/s ({ok} of {total} ok)", flush=True)


def precision_figures(pipeline, frames: list[bytes], figures: dict, label: str) -> None:
    """fp32 vs bf16 autocast on the same letterboxed crops: largest p(pain) difference and label flips."""

    from inference.faces import select_face
    from inference.tensor_ops import crop_letterbox, decode_frames

    device, model = pipeline.device, pipeline.model
    decoded = [
        f.tensor for f in decode_frames(frames, device, max_pixels=pipeline.max_pixels, max_bytes=pipeline.max_bytes)
    ]
    found = pipeline.detector.detect_tensors(decoded)
    faces = [select_face(b, (int(t.shape[-1]), int(t.shape[-2])), pipeline.margin) for t, b in zip(decoded, found)]
    keep = [i for i, f in enumerate(faces) if f is not None]
    crops = crop_letterbox(
        [decoded[i] for i in keep], [faces[i].as_tuple() for i in keep], int(model.spec["size"]), model.spec["fill"]
    )
    saved = pipeline.precision
    results = {}
    try:
        for precision in ("fp32", "bf16"):
            pipeline.precision = precision
            pipeline.classify_letterboxed(crops)
            seconds, probs = timed(device, lambda: pipeline.classify_letterboxed(crops))
            results[precision] = (len(keep) / seconds, probs[:, model.pain_index])
    finally:
        pipeline.precision = saved
    drift = float((results["fp32"][1] - results["bf16"][1]).abs().max())
    flips = int(((results["fp32"][1] >= 0.5) != (results["bf16"][1] >= 0.5)).sum())
    figures.setdefault(label, {})["precision"] = {
        "fp32_fps": results["fp32"][0],
        "bf16_fps": results["bf16"][0],
        "max_abs_p_pain_diff": drift,
        "label_flips": flips,
        "crops": len(keep),
        "within_0.005": drift <= 0.005,
    }
    print(
        f"{label:<22} classifier fp32 {results['fp32'][0]:.0f} vs bf16 {results['bf16'][0]:.0f} crops/s; "
        f"max |p(pain) fp32 - bf16| {drift:.4f} ({'within' if drift <= 0.005 else 'OVER'} 0.005), "
        f"{flips} of {len(keep)} labels flip (bf16 = autocast on CUDA only; a CPU runs fp32 both times)",
        flush=True,
    )


def _engine_child(bundle: str, device: str, batch: int, count: int, seed: int, barrier, results) -> None:
    """One engine process of :func:`engine_processes`: its own models and frames, timed after the barrier."""
    import time as clock

    from inference.bundle import load_bundle
    from inference.detect import get_detector
    from inference.pipeline import TensorPipeline

    pipeline = TensorPipeline(
        load_bundle(bundle, device=device, max_batch=batch), get_detector("retinaface", device=device, runtime="torch")
    )
    pipeline.encode_crops = False
    frames = benchkit.unique_frames(count, prefix=f"p{seed}-")
    batches = [frames[i : i + batch] for i in range(0, count - batch + 1, batch)]
    for _ in pipeline.run_stream(batches[:1]):
        pass
    barrier.wait(timeout=180)
    ok = sum(o.status == "ok" for out in pipeline.run_stream(batches) for o in out)
    results.put((len(batches) * batch, ok, clock.monotonic()))


def engine_processes(bundle: Path, device, batch: int, processes: int, count: int, figures: dict, label: str) -> None:
    """The engine in ``processes`` processes sharing the GPU (as the worker's prefork processes do): total frames/s."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes + 1), context.Queue()
    children = [
        context.Process(target=_engine_child, args=(str(bundle), str(device), batch, count, i, barrier, results))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    try:
        barrier.wait(timeout=180)
        start = time.monotonic()
        done = [results.get(timeout=120) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    total, ok = sum(d[0] for d in done), sum(d[1] for d in done)
    fps = total / (max(d[2] for d in done) - start)
    figures.setdefault(label, {}).setdefault(str(batch), {})[f"engine_x{processes}_processes"] = fps
    print(
        f"{label:<22} batch {batch:>4}: engine in {processes} processes {fps:8.0f} frames/s ({ok} of {total} ok)",
        flush=True,
    )


def agreement_figures(pipeline, frames: list[bytes], figures: dict, label: str) -> None:
    """The GPU path against the CPU path on the same frames: ONNX detector + PIL crops + fp32 (:class:`Pipeline`)."""
    from inference.detect import get_detector
    from inference.pipeline import Pipeline

    reference = Pipeline(
        pipeline.model, get_detector("retinaface", device="cpu", runtime="onnx"), margin=pipeline.margin
    )
    want, got = reference.run_batch(frames), pipeline.run_batch(frames)
    same_status = sum(a.status == b.status for a, b in zip(got, want))
    both = [(a, b) for a, b in zip(got, want) if a.status == b.status == "ok"]
    box = max((max(abs(p - q) for p, q in zip(a.box, b.box)) for a, b in both), default=0)
    dp = max((abs(a.p_pain - b.p_pain) for a, b in both), default=0.0)
    flips = sum(a.label != b.label for a, b in both)
    figures.setdefault(label, {})["agreement_with_cpu_path"] = {
        "frames": len(frames),
        "same_status": same_status,
        "max_box_px": box,
        "max_abs_p_pain_diff": dp,
        "label_flips": flips,
    }
    print(
        f"{label:<22} GPU path vs CPU path (ONNX detector, PIL crops, fp32) on {len(frames)} frames: "
        f"{same_status} same status, boxes within {box} px, max |p(pain) diff| {dp:.4f}, {flips} labels differ",
        flush=True,
    )


def bench_model(
    label: str,
    bundle: Path,
    detector,
    device,
    sizes: list[int],
    frames: list[bytes],
    figures: dict,
    budget: Budget,
    processes: int = 0,
) -> None:
    """Every figure for one classifier, each stage guarded."""
    from inference.bundle import load_bundle
    from inference.pipeline import TensorPipeline

    pipeline = guarded(
        figures,
        f"{label} load",
        budget,
        lambda: TensorPipeline(load_bundle(bundle, device=device, max_batch=max(sizes)), detector),
    )
    if pipeline is None:
        return
    figures.setdefault(label, {})["precision_default"] = pipeline.precision
    for batch in sizes:
        guarded(
            figures,
            f"{label} stages {batch}",
            budget,
            lambda b=batch: stage_figures(pipeline, frames, b, figures, label, compare_cpu_decode=b == max(sizes)),
        )
        guarded(
            figures,
            f"{label} engine {batch}",
            budget,
            lambda b=batch: engine_figures(pipeline, frames, b, figures, label, saliency=False),
        )
    middle = sizes[len(sizes) // 2]
    few = frames[: max(middle * 2, len(frames) // 4)]
    guarded(
        figures,
        f"{label} engine+jpeg",
        budget,
        lambda: engine_figures(pipeline, frames, middle, figures, label, saliency=False, jpeg=True),
    )
    guarded(
        figures,
        f"{label} engine+gradcam",
        budget,
        lambda: engine_figures(pipeline, few, middle, figures, label, saliency=True),
    )
    guarded(figures, f"{label} precision", budget, lambda: precision_figures(pipeline, frames[:512], figures, label))
    guarded(figures, f"{label} agreement", budget, lambda: agreement_figures(pipeline, frames[:64], figures, label))
    if processes > 1:
        guarded(
            figures,
            f"{label} engine x{processes} processes",
            budget,
            lambda: engine_processes(bundle, device, max(sizes), processes, len(frames), figures, label),
        )


def summary(json_path: Path, worker_log: Path | None) -> str:
    """The one line bench_gpu.sh ends with."""
    figures = json.loads(json_path.read_text()) if json_path.is_file() else {}
    engine = {}
    for label in ("bootstrap-fer-proxy", "painnet-mobilenet_v2"):
        rows = figures.get(label, {})
        values = [
            value
            for key, row in rows.items()
            if key.isdigit()
            for name, value in row.items()
            if name == "engine" or (name.startswith("engine_x") and name.endswith("_processes"))
        ]
        engine[label] = max(values) if values else float("nan")
    workers: dict[str, float] = {}  # processes -> frames/s (saliency maps on), from bench_worker's last lines
    if worker_log and worker_log.is_file():
        for line in worker_log.read_text(errors="replace").splitlines():
            if line.startswith("bench_worker:"):
                fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
                workers[fields.get("processes", "1")] = float(fields.get("worker_fps", "nan"))
    best = max(workers, key=lambda k: workers[k] if workers[k] == workers[k] else -1.0, default="1")
    worker = workers.get(best, float("nan"))
    drift = max(
        (figures.get(k, {}).get("precision", {}).get("max_abs_p_pain_diff", float("nan")) for k in engine),
        default=float("nan"),
    )
    engine_min = min(engine.values())
    return (
        f"bench_gpu: device={str(figures.get('device', '?')).replace(' ', '_')} engine_fps_bootstrap={engine['bootstrap-fer-proxy']:.0f} "
        f"engine_fps_painnet={engine['painnet-mobilenet_v2']:.0f} "
        + " ".join(f"worker_fps_{k}proc={v:.0f}" for k, v in sorted(workers.items()))
        + f" worker_fps={worker:.0f} bf16_max_dp={drift:.4f} "
        f"engine_goal_{ENGINE_GOAL:.0f}={'met' if engine_min >= ENGINE_GOAL else 'NOT met'} "
        f"worker_goal_{WORKER_GOAL:.0f}={'met' if worker >= WORKER_GOAL else 'NOT met'} "
        f"errors={len(figures.get('errors', {}))} skipped={len(figures.get('skipped', []))}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-sizes", default=None, help="default 32,128,512 on CUDA, 4,16 on a CPU")
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames per stage measurement (distinct JPEGs; default 2048 on CUDA, 32 on a CPU)",
    )
    parser.add_argument("--models", default="bootstrap-fer-proxy,painnet-mobilenet_v2")
    parser.add_argument("--budget", type=float, default=200.0, help="seconds; later stages are skipped past it")
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--processes", type=int, default=0, help="also the engine in this many processes sharing the device (0: no)"
    )
    parser.add_argument("--summary", metavar="WORKER_LOG", default=None, help="print the summary line and exit")
    args = parser.parse_args(argv)
    out = os.environ.get("OUT")
    json_path = Path(args.json or (Path(out) if out else benchkit.BENCH_DIR) / "bench_gpu.json")
    if args.summary is not None:
        print(summary(json_path, Path(args.summary) if args.summary else None))
        return 0
    budget = Budget(args.budget)
    import torch

    from inference.detect import get_detector
    from inference.runtime import resolve_device

    device = resolve_device(args.device)
    figures: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "machine": benchkit.machine_line(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    print(f"# machine: {figures['machine']}\n# {benchkit.gpu_line()}\n# torch {torch.__version__}", flush=True)
    on_gpu = device.type == "cuda"
    sizes = [int(v) for v in (args.batch_sizes or ("32,128,512" if on_gpu else "4,16")).split(",")]
    count = args.frames or (2048 if on_gpu else 32)
    frames = benchkit.unique_frames(max(count, max(sizes)), prefix="gpu")

    def save() -> None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=1, default=str))

    with benchkit.temp_dir("neopain-bench-gpu-") as folder:
        bundles = workerkit.timing_bundles(folder)
        detector = guarded(
            figures, "detector", budget, lambda: get_detector("retinaface", device=str(device), runtime="torch")
        )
        for label in args.models.split(","):
            if detector is None:
                break
            bench_model(label, bundles[label], detector, device, sizes, frames, figures, budget, args.processes)
            save()
    figures["seconds"] = args.budget - budget.left()
    save()
    print(f"# figures in {json_path}")
    engine = summary(json_path, None).split(" worker_fps=")[0].replace("bench_gpu:", "bench_gpu_engine:", 1)
    print(engine)  # bench_gpu.sh's last line adds the worker figures
    return 0


if __name__ == "__main__":
    sys.exit(main())
