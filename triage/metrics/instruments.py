"""The worker's own figures, kept in the process that scores frames (many processes: see exposition).

Labels stay few and bounded: the model version's label (a handful per deployment) and an outcome.
Per-unit figures come from the database at scrape time (:mod:`triage.metrics.figures`), where they
survive restarts and need no coordination between processes.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Seconds for one batch through the pipeline (decode, detect, classify, rescore): CPU batches of
# 1-32 frames take 0.05-5 s on the machines measured in docs/performance.md.
INFERENCE_SECONDS = Histogram(
    "neopain_inference_seconds",
    "Time to score one batch of frames (pipeline run), by model version.",
    ["model_version"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BATCH_SIZE = Histogram(
    "neopain_inference_batch_size",
    "Frames per scored batch, by model version (NEOPAIN_BATCH_MAX caps it).",
    ["model_version"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
WORKER_FRAMES = Counter(
    "neopain_worker_frames",
    "Frames the worker finished, by outcome (done, no_face, failed, duplicate, waiting).",
    ["outcome"],
)
WORKER_OUTCOMES = ("done", "no_face", "failed", "duplicate", "waiting")
for _outcome in WORKER_OUTCOMES:  # exported as 0 from the start, so rate() sees the first frame
    WORKER_FRAMES.labels(outcome=_outcome)


def batch_observe(*, model_version: str, seconds: float, size: int) -> None:
    INFERENCE_SECONDS.labels(model_version=model_version).observe(seconds)
    BATCH_SIZE.labels(model_version=model_version).observe(size)


def frames_outcome_count(counts: dict[str, int]) -> None:
    """Add one ``frames_process`` call's outcome counts (``claimed`` is not an outcome)."""
    for outcome, n in counts.items():
        if outcome != "claimed" and n:
            WORKER_FRAMES.labels(outcome=outcome).inc(n)
