#!/usr/bin/env python
"""Worker throughput, end to end, against model-only and a naive worker (issue 7, goals 1 and 5).

In one process, on a throw-away site (embedded SQLite by default, ``--postgres`` for a
``neopain_bench_worker`` database), for the bootstrap FER proxy and a PainNet mobilenet_v2:

* **model-only**: the detector's ONNX session and the classifier's forward pass on tensors
  prepared beforehand (frames decoded, resized, cropped and normalised outside the clock),
  exactly as the pipeline calls them (detector per frame on CPU, batched on CUDA; classifier
  in chunks of the model's ``max_batch``, its trunk on the runtime that serves it: ONNX Runtime
  for PainNet on CPU, see ``inference/trunk_runtime.py``).
* **worker**: what a Celery worker does per message, minus the broker: ``frame_process(id)``
  for every queued frame in arrival order (the first message of a batch claims up to
  ``NEOPAIN_BATCH_MAX`` waiting frames; the others find nothing left to claim), i.e. read the
  stored file, decode, detect, crop, classify, store the crop (and the Grad-CAM map for
  nurse-routed frames), write prediction + case/alert + frame state. Run with the saliency
  map on (the default) and off, and, when the trunk is served by ONNX Runtime, on PyTorch
  (``worker-torch``: what batching gives apart from the runtime).
* **naive**: the same models and the same database writes, one frame per task and one image at
  a time: a fresh PIL->tensor transform per frame, an unbatched forward on a plainly loaded
  PyTorch module, a separate Grad-CAM pass per nurse case, ``batch_max=1``.

Rounds interleave the modes so each sees the same machine load; ratios are taken within a round
and their median is reported, by wall time and by this process's CPU time (steadier when the
machine is shared). On CUDA the classifier also runs in fp32 and fp16 autocast on the same crops
(throughput and the largest p(pain) difference). ``--profile`` writes a cProfile of one worker
round (top lines printed).
The last line is ``bench_worker: worker_fps=... model_fps=... ratio=... naive_fps=... speedup=...``
for the bootstrap model (the model that serves until a unit registers its own).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit
import workerkit
from workerkit import NaivePipeline, gpu_precision, print_profile, run_worker_processes, sync_device

MODES = ("model-only", "model-only-torch", "worker", "worker-nosaliency", "worker-torch", "naive")


@dataclass
class Round:
    mode: str
    frames: int
    seconds: float
    #: ms per frame by stage (model-only: detector/classifier forward; worker: the pipeline's own timings)
    stages: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of this process (all threads): less sensitive than wall time to neighbours' load
    cpu: float = 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu * 1000 / self.frames

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def build_site(data_dir: Path, database_url: str | None) -> None:
    env = benchkit.site_env(data_dir, database_url=database_url)
    benchkit.django_inprocess(env)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


class Bench:
    """One unit and neonate per model; frames are queued per round (unique bytes each)."""

    def __init__(self, label: str, bundle: Path, variants: list[bytes], device: str | None) -> None:
        from triage import services
        from triage.models import ModelVersion, Neonate, Unit

        self.label = label
        self.variants = variants
        self.device = device
        ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).update(status=ModelVersion.Status.RETIRED)
        self.unit, _ = Unit.objects.get_or_create(code=f"bench-{label}", defaults={"name": f"Bench {label}"})
        services.unit_settings_get(unit=self.unit)
        self.neonate, _ = Neonate.objects.get_or_create(mrn=f"BENCH-{label}", defaults={"unit": self.unit, "bed": "1"})
        self.classifier = services.model_version_register(bundle_path=bundle, unit=self.unit, status="active")
        self.pipeline, self.detector_name = services._pipeline_for(classifier=self.classifier, detector=None)
        self.counter = 0

    # ---------------------------------------------------------------- frames

    def queue(self, count: int) -> list[int]:
        """Store ``count`` new frames and mark them queued, as the upload API leaves them."""
        from django.core.files.base import ContentFile
        from django.utils import timezone

        from triage.models import Frame

        rows = []
        now = timezone.now()
        import hashlib

        for _ in range(count):
            self.counter += 1
            data = benchkit.jpeg_tagged(
                self.variants[self.counter % len(self.variants)], f"{self.label}-{self.counter}"
            )
            frame = Frame(
                neonate=self.neonate,
                unit=self.unit,
                captured_at=now,
                received_at=now,
                sha256=hashlib.sha256(data).hexdigest(),
                image_format="JPEG",
                width=640,
                height=480,
                size_bytes=len(data),
                status=Frame.Status.QUEUED,
                status_changed_at=now,
            )
            frame.image.save("upload", ContentFile(data), save=False)
            rows.append(frame)
        created = Frame.objects.bulk_create(rows)
        return (
            [f.pk for f in created]
            if created[0].pk
            else list(
                Frame.objects.filter(neonate=self.neonate, status=Frame.Status.QUEUED)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
        )

    # ---------------------------------------------------------------- modes

    def worker(
        self,
        count: int,
        *,
        saliency: bool,
        profile: Path | None = None,
        runtime: str | None = None,
        processes: int = 1,
    ) -> Round:
        """``runtime="torch"``: the same worker with the classifier's trunk on PyTorch instead of ONNX Runtime.

        ``processes`` > 1: that many worker processes (spawned, models loaded before the clock starts)
        share the messages and the device, as ``celery worker --concurrency N`` does.
        """
        from django.conf import settings

        from triage.models import Frame
        from triage.tasks import frame_process

        settings.NEOPAIN_SALIENCY = saliency
        previous = os.environ.get("NEOPAIN_CLASSIFIER_RUNTIME")
        if runtime:
            os.environ["NEOPAIN_CLASSIFIER_RUNTIME"] = runtime
        ids = self.queue(count)
        profiler = cProfile.Profile() if profile else None
        try:
            start, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            if processes > 1:
                seconds, cpu = run_worker_processes(
                    ids,
                    processes=processes,
                    classifier_pk=self.classifier.pk,
                    saliency=saliency,
                    warm=[benchkit.jpeg_tagged(v, "warm") for v in self.variants[:8]],
                )
            else:
                for frame_id in ids:  # one message per upload, in arrival order
                    frame_process(frame_id)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            if profiler:
                profiler.disable()
        finally:
            settings.NEOPAIN_SALIENCY = True
            if previous is None:
                os.environ.pop("NEOPAIN_CLASSIFIER_RUNTIME", None)
            else:
                os.environ["NEOPAIN_CLASSIFIER_RUNTIME"] = previous
        left = Frame.objects.filter(pk__in=ids).exclude(status__in=["done", "no_face"]).count()
        if left:
            raise RuntimeError(
                f"{left} frames not scored: {list(Frame.objects.filter(pk__in=ids).values_list('status', 'reason')[:3])}"
            )
        if profiler and profile:
            profiler.dump_stats(str(profile))
        from triage.models import Prediction

        timings = list(Prediction.objects.filter(frame_id__in=ids).values_list("timings_ms", flat=True))
        stages = {key: sum(t.get(key, 0.0) for t in timings) / count for key in ("decode", "detect", "classify")}
        stages["rest"] = seconds * 1000 / count - sum(stages.values())
        mode = "worker-torch" if runtime == "torch" else "worker" if saliency else "worker-nosaliency"
        return Round(mode, count, seconds, stages, cpu)

    def naive(self, count: int) -> Round:
        from triage.models import Frame
        from triage.services import worker as services

        naive = NaivePipeline(self.pipeline, self.device)
        ids = self.queue(count)
        original = services._pipeline_for
        services._pipeline_for = lambda **kwargs: (naive, self.detector_name)
        try:
            start, cpu = time.perf_counter(), time.process_time()
            for frame_id in ids:
                if Frame.objects.filter(pk=frame_id).exists():
                    services.frames_process(frame_ids=[frame_id], batch_max=1)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        finally:
            services._pipeline_for = original
        return Round("naive", count, seconds, cpu=cpu)

    def model_only(self, count: int, *, runtime: str | None = None) -> Round:
        """Detector session + classifier forward on tensors prepared outside the clock.

        ``runtime="torch"``: the classifier's trunk on PyTorch (the denominator of ``worker-torch``).
        """
        import dataclasses

        import numpy as np
        import torch

        from inference.decode import decode_image
        from inference.detect import select_face
        from inference.preprocess import crop_face, letterbox

        pipeline = self.pipeline
        detector, model = pipeline.detector, pipeline.model
        if runtime == "torch":
            model = dataclasses.replace(model, trunk_runner=None)
        frames = [benchkit.jpeg_tagged(self.variants[i % len(self.variants)], f"m{i}") for i in range(count)]
        images = [decode_image(f) for f in frames]
        det_inputs = [detector._prepare(image)[0] for image in images]
        crops = []
        for image in images:
            face = select_face(detector.detect(image), image.size, pipeline.margin)
            if face is not None:
                crops.append(letterbox(crop_face(image, face), int(model.spec["size"]), model.spec["fill"]))
        cls_inputs = [model.to_tensor(crops[i : i + model.max_batch]) for i in range(0, len(crops), model.max_batch)]
        if detector.batches_on_device:
            det_batches = [
                np.stack(det_inputs[i : i + detector.max_batch]) for i in range(0, count, detector.max_batch)
            ]
        else:
            det_batches = [x[None] for x in det_inputs]
        session, name = detector._session, detector._input_name
        sync_device(model.device)
        start, cpu = time.perf_counter(), time.process_time()
        for batch in det_batches:
            session.run(None, {name: batch})
        sync_device(model.device)
        detected = time.perf_counter()
        with torch.inference_mode():
            for batch in cls_inputs:
                model.logits_of(batch)  # the served runtime: ONNX Runtime trunk + PyTorch head on CPU
        sync_device(model.device)
        end, cpu = time.perf_counter(), time.process_time() - cpu
        stages = {"detector": (detected - start) * 1000 / count, "classifier": (end - detected) * 1000 / count}
        return Round("model-only-torch" if runtime == "torch" else "model-only", count, end - start, stages, cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and rounds")
    parser.add_argument("--frames", type=int, default=None, help="frames per mode and round (default 32, quick 16)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds, median reported (default 5, quick 3)")
    parser.add_argument("--models", default="bootstrap-fer-proxy,painnet-mobilenet_v2")
    parser.add_argument("--postgres", action="store_true", help="a neopain_bench_worker PostgreSQL database")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--profile", action="store_true", help="cProfile one worker round per model")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="modes to run (default all; the GPU run uses worker,worker-nosaliency: model-only and naive time the CPU detector)",
    )
    parser.add_argument("--batch-max", type=int, default=None, help="NEOPAIN_BATCH_MAX for the site (frames per claim)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes sharing the device for the worker modes (celery --concurrency); 1 = this process",
    )
    args = parser.parse_args(argv)
    modes = set(args.modes.split(","))
    unknown = modes - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    if args.batch_max:
        os.environ["NEOPAIN_BATCH_MAX"] = str(args.batch_max)
    count = args.frames or (16 if args.quick else 32)
    repeats = args.repeats or (3 if args.quick else 5)

    if args.device:
        os.environ["NEOPAIN_DEVICE"] = args.device
    print(f"# machine: {benchkit.machine_line()}")
    print(f"# {benchkit.gpu_line()}")
    database_url = benchkit.postgres_recreate("neopain_bench_worker") if args.postgres else None
    headline: dict[str, dict[str, Round]] = {}
    with benchkit.temp_dir("neopain-bench-worker-") as folder:
        try:
            build_site(folder / "data", database_url)
            from django.conf import settings

            from inference.runtime import configure_threads

            bundles = workerkit.timing_bundles(folder)
            threads = configure_threads()
            print(
                f"# database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
                f"NEOPAIN_BATCH_MAX={settings.NEOPAIN_BATCH_MAX}, {threads} torch/ORT intra-op threads, "
                f"{count} frames per mode and round of 640x480 JPEG, {repeats} rounds, "
                f"{args.processes} worker process(es) in the worker modes"
            )
            variants = benchkit.face_variants()
            for label in args.models.split(","):
                bench = Bench(label, bundles[label], variants, args.device)
                print(
                    f"## {label} on {bench.pipeline.model.device} (detector {bench.detector_name}, "
                    f"providers {getattr(bench.pipeline.detector, 'providers', '?')})"
                )
                bench.worker(8, saliency=True)  # warm-up: caches, allocator, first-write costs
                # With the trunk on ONNX Runtime, also the same worker on PyTorch: what batching
                # alone gives, apart from the runtime.
                split_runtime = bench.pipeline.model.runtime != "torch"
                if split_runtime:
                    bench.worker(8, saliency=True, runtime="torch")
                print(f"#   classifier trunk on {bench.pipeline.model.runtime}", flush=True)
                if "naive" in modes:
                    bench.naive(4)
                plan = [
                    ("model-only", lambda bench=bench: bench.model_only(count)),
                    ("worker", lambda bench=bench: bench.worker(count, saliency=True, processes=args.processes)),
                    (
                        "worker-nosaliency",
                        lambda bench=bench: bench.worker(count, saliency=False, processes=args.processes),
                    ),
                    *(
                        [
                            ("model-only-torch", lambda bench=bench: bench.model_only(count, runtime="torch")),
                            ("worker-torch", lambda bench=bench: bench.worker(count, saliency=True, runtime="torch")),
                        ]
                        if split_runtime
                        else []
                    ),
                    ("naive", lambda bench=bench: bench.naive(count)),
                ]
                rounds: list[dict[str, Round]] = []
                for repeat in range(repeats):
                    runs = [run() for mode, run in plan if mode in modes]
                    rounds.append({run.mode: run for run in runs})
                    print(f"#   round {repeat + 1}: " + ", ".join(f"{r.mode} {r.fps:.1f}" for r in runs), flush=True)
                # The machine is shared: its load moves from second to second. Ratios are taken
                # within a round (modes run back to back) and the median round is reported.
                summary: dict[str, Round] = {}
                for mode in MODES:
                    if mode not in rounds[0]:
                        continue
                    ordered = sorted((r[mode] for r in rounds), key=lambda run: run.fps)
                    summary[mode] = median = ordered[len(ordered) // 2]
                    split = ", ".join(f"{key} {value:.1f}" for key, value in median.stages.items())
                    print(
                        f"{label:<22} {mode:<18} {median.fps:8.1f} frames/s median ({1000 / median.fps:6.1f} ms/frame"
                        + (f": {split}" if split else "")
                        + f"), best {ordered[-1].fps:.1f}; CPU {statistics.median(r[mode].cpu_ms for r in rounds):.1f} ms/frame"
                    )
                ratios = {}
                for mode in ("worker", "worker-nosaliency", "worker-torch"):
                    # worker-torch against model-only-torch: the same runtime on both sides of the ratio.
                    base = "model-only-torch" if mode == "worker-torch" else "model-only"
                    if mode not in rounds[0] or base not in rounds[0] or "naive" not in rounds[0]:
                        continue
                    of_model = statistics.median(r[mode].fps / r[base].fps for r in rounds)
                    of_naive = statistics.median(r[mode].fps / r["naive"].fps for r in rounds)
                    ratios[mode] = (of_model, of_naive)
                    cpu_of_model = statistics.median(r[base].cpu / r[mode].cpu for r in rounds)
                    cpu_of_naive = statistics.median(r["naive"].cpu / r[mode].cpu for r in rounds)
                    print(
                        f"{label:<22} {mode:<18} = {of_model:5.1%} of {base}, {of_naive:4.1f}x naive "
                        f"(medians of per-round ratios); by CPU time {cpu_of_model:5.1%} and {cpu_of_naive:4.1f}x"
                    )
                headline[label] = (summary, ratios, bench.pipeline.model.runtime)
                if bench.pipeline.model.device.type == "cuda" and "model-only" in modes:
                    gpu_precision(bench, count * 4)  # scripts/bench_gpu.py measures bf16 on the GPU path
                if args.profile:
                    path = folder.parent / f"neopain-bench-worker-{label}.prof"
                    bench.worker(count, saliency=True, profile=path)
                    print_profile(path, args.profile_lines)
        finally:
            from django.db import connections

            connections.close_all()
            if database_url:
                benchkit.postgres_drop("neopain_bench_worker")
    for label, (_summary, ratios, runtime) in headline.items():
        for mode, trunk in (("worker", runtime), ("worker-torch", "torch")):
            if mode not in ratios:
                continue
            of_model, of_naive = ratios[mode]
            print(
                f"# goal 1 ({label}, trunk on {trunk}, saliency on): {of_model:.0%} of model-only "
                f"(>= 80%: {'met' if of_model >= 0.8 else 'NOT met'}), {of_naive:.1f}x naive "
                f"(>= 3x: {'met' if of_naive >= 3 else 'NOT met'})"
            )
    import torch

    if not torch.cuda.is_available():
        print("# goal 5 (GPU, >= 1,000 frames/s one worker): GPU not available on this machine: not measured")
    label = "bootstrap-fer-proxy" if "bootstrap-fer-proxy" in headline else next(iter(headline))
    summary, ratios, _runtime = headline[label]
    nan = float("nan")

    def fps(mode: str) -> float:
        return summary[mode].fps if mode in summary else nan

    of_model, of_naive = ratios.get("worker", (nan, nan))
    print(
        f"bench_worker: worker_fps={fps('worker'):.2f} model_fps={fps('model-only'):.2f} "
        f"ratio={of_model:.2f} naive_fps={fps('naive'):.2f} speedup={of_naive:.2f} processes={args.processes} "
        f"worker_nosaliency_fps={fps('worker-nosaliency'):.2f}"
    )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
