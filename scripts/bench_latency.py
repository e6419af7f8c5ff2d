#!/usr/bin/env python
"""Upload -> verdict stored, at a paced offered load (issue 7, goal 2).

For the embedded default (SQLite + SQLAlchemy broker) and for PostgreSQL + Redis (when they
answer), a throw-away site is set up (``neopain_setup``: demo unit, camera token, bootstrap
model), then a real gunicorn (``WEB_CONCURRENCY`` sync workers, as ``make run``) and a real
Celery worker (prefork, concurrency 1, queues inference + default) are started. A camera
uploads unique 640x480 face JPEGs open-loop at ``--rate`` frames/s (default 10) for
``--seconds`` (default 30): each upload is sent at its scheduled time whatever happened to the
previous ones.

Latency = the prediction's ``created_at`` (set by the worker just before it writes the verdict;
the commit follows within milliseconds) minus the client's clock just before it sent the
upload. Same machine, same clock. Also printed: the upload's HTTP response time, the queue wait
(upload received -> worker starts writing) and the pipeline's own stage timings.

The last line is ``bench_latency: embedded_p95_ms=... postgres_redis_p95_ms=...``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import queue
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit

GOAL_P95_MS = 250.0


def run_load(port: int, creds: dict[str, str], frames: list[bytes], rate: float, senders: int = 4) -> list[dict]:
    """Send ``frames`` open-loop at ``rate``/s; one record per upload (client times, status, frame id)."""
    slots: queue.Queue[int] = queue.Queue()
    for index in range(len(frames)):
        slots.put(index)
    records: list[dict] = [{} for _ in frames]
    start = time.monotonic() + 0.5
    wall_offset = time.time() - time.monotonic()

    def sender() -> None:
        client = benchkit.Uploader(port, creds["token"], mrn=creds["mrn"])
        try:
            while True:
                try:
                    index = slots.get_nowait()
                except queue.Empty:
                    return
                body = client.body(frames[index], f"bed1-{index}.jpg")
                due = start + index / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent = time.monotonic()
                record = {"late_ms": (sent - due) * 1000, "sent_wall": sent + wall_offset}
                try:
                    status, data = client.post(body)
                    record["status"] = status
                    if status in (200, 202):
                        record["frame_id"] = json.loads(data)["id"]
                except OSError as exc:
                    record["status"] = f"{type(exc).__name__}"
                record["response_ms"] = (time.monotonic() - sent) * 1000
                records[index] = record
        finally:
            client.close()

    benchkit.run_threads(sender, senders)
    return records


class Rows:
    """Frame and prediction rows read straight from the site's database (SQLite file or PostgreSQL)."""

    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.database_url:
            import psycopg2

            connection = psycopg2.connect(self.database_url)
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql.replace("?", "%s"), params)
                    return cursor.fetchall()
            finally:
                connection.close()
        connection = sqlite3.connect(self.data_dir / "neopain.sqlite3", timeout=20)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def pending(self, ids: list[int]) -> int:
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        sql = f"SELECT COUNT(*) FROM triage_frame WHERE id IN ({marks}) AND status IN ('queued', 'processing')"
        return int(self._query(sql, tuple(ids))[0][0])

    def outcomes(self, ids: list[int]) -> dict[int, dict]:
        marks = ",".join("?" * len(ids))
        rows = self._query(
            "SELECT f.id, f.status, f.received_at, p.created_at, p.timings_ms FROM triage_frame f "
            f"LEFT JOIN triage_prediction p ON p.frame_id = f.id WHERE f.id IN ({marks})",
            tuple(ids),
        )
        result = {}
        for frame_id, status, received, predicted, timings in rows:
            result[int(frame_id)] = {
                "status": status,
                "received": _epoch(received),
                "predicted": _epoch(predicted) if predicted is not None else None,
                "timings": json.loads(timings) if isinstance(timings, str) else (timings or {}),
            }
        return result


def _epoch(value) -> float:
    if isinstance(value, str):  # SQLite: ISO text in UTC
        value = dt.datetime.fromisoformat(value.replace(" ", "T"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def wait_scored(rows: Rows, ids: list[int], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = rows.pending(ids)
        if not left:
            return 0
        time.sleep(0.5)
    return rows.pending(ids)


def bench_backend(name: str, args, variants: list[bytes]) -> float | None:
    with (
        benchkit.backend_stores(name, database="neopain_bench_latency", redis_db=12) as (database_url, redis_url),
        benchkit.temp_dir("neopain-bench-latency-", keep=args.keep) as folder,
        benchkit.Processes(folder / "logs") as procs,
    ):
        data_dir = folder / "data"
        env = benchkit.site_env(
            data_dir,
            database_url=database_url,
            redis_url=redis_url,
            NEOPAIN_BENCH_LOG_LEVEL="INFO",
            NEOPAIN_LOG_LEVEL="INFO",
            WEB_CONCURRENCY=str(args.web_workers),
        )
        creds = benchkit.site_setup(env)
        port = benchkit.free_port()
        worker = procs.start("worker", benchkit.celery_argv(concurrency=1), env)
        web = procs.start("web", benchkit.gunicorn_argv(port, workers=args.web_workers), env)
        benchkit.wait_http(f"http://127.0.0.1:{port}/api/v1/health/", process=web)
        rows = Rows(data_dir, database_url)
        # Warm-up: the worker loads the model, both processes open their connections.
        warm = run_load(port, creds, benchkit.unique_frames(4, prefix=f"warm-{name}", variants=variants), rate=2)
        warm_ids = [r["frame_id"] for r in warm if "frame_id" in r]
        if len(warm_ids) != 4 or wait_scored(rows, warm_ids, 180):
            print(procs.log("worker"), procs.log("web"), sep="\n")
            raise RuntimeError(f"{name}: warm-up frames were not scored (worker alive: {worker.poll() is None})")
        count = int(args.rate * args.seconds)
        frames = benchkit.unique_frames(count, prefix=f"load-{name}", variants=variants)
        load_start = time.monotonic()
        records = run_load(port, creds, frames, args.rate)
        offered_seconds = time.monotonic() - load_start
        ids = [r["frame_id"] for r in records if "frame_id" in r]
        unscored = wait_scored(rows, ids, 120)
        outcomes = rows.outcomes(ids) if ids else {}

    errors = [r.get("status") for r in records if r.get("status") not in (200, 202)]
    latencies, waits, pipeline_ms = [], [], []
    for record in records:
        outcome = outcomes.get(record.get("frame_id", -1))
        if not outcome or outcome["predicted"] is None:
            continue
        latencies.append((outcome["predicted"] - record["sent_wall"]) * 1000)
        waits.append(outcome["timings"].get("queue_wait", float("nan")))
        pipeline_ms.append(sum(outcome["timings"].get(k, 0.0) for k in ("decode", "detect", "classify")))
    no_verdict = len(ids) - len(latencies)
    p95 = benchkit.pct(latencies, 95)
    print(
        f"{name:<15} offered {args.rate:g}/s for {offered_seconds:.0f} s: {len(records)} uploads, "
        f"{len(errors)} errors, {len(latencies)} verdicts, {no_verdict} without verdict ({unscored} still queued)"
    )
    print(f"{name:<15}   upload -> verdict stored: {benchkit.spread(latencies)}")
    print(
        f"{name:<15}   upload HTTP response:     {benchkit.spread([r['response_ms'] for r in records if 'response_ms' in r])}"
    )
    print(f"{name:<15}   received -> worker writes: {benchkit.spread(waits)}")
    print(f"{name:<15}   pipeline decode+detect+classify: {benchkit.spread(pipeline_ms)}")
    print(f"{name:<15}   sender lateness (open loop): max {max(r.get('late_ms', 0) for r in records):.1f} ms")
    verdict = "met" if p95 <= GOAL_P95_MS and not errors and not no_verdict else "NOT met"
    print(f"{name:<15}   goal p95 <= {GOAL_P95_MS:.0f} ms at {args.rate:g} frames/s: {verdict}")
    return p95


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s per backend instead of 30")
    parser.add_argument("--rate", type=float, default=10.0, help="offered uploads per second")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--backends", default="embedded,postgres+redis")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn sync workers (make run uses 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folders (logs) for inspection")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (10.0 if args.quick else 30.0)
    print(f"# machine: {benchkit.machine_line()}")
    print(f"# {benchkit.gpu_line()}")
    print(
        f"# web: gunicorn, {args.web_workers} sync workers; worker: celery prefork concurrency 1; "
        f"model: bootstrap FER proxy + RetinaFace; frames: unique 640x480 JPEGs"
    )
    variants = benchkit.face_variants()
    results: dict[str, float | None] = {}
    for name in args.backends.split(","):
        if name == "postgres+redis" and not (benchkit.postgres_available() and benchkit.redis_available()):
            print(f"{name:<15} skipped: PostgreSQL or Redis does not answer")
            results[name] = None
            continue
        results[name] = bench_backend(name, args, variants)
    figures = " ".join(
        f"{key.replace('+', '_')}_p95_ms={value:.1f}" if value is not None else f"{key.replace('+', '_')}_p95_ms=n/a"
        for key, value in results.items()
    )
    print(f"bench_latency: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
