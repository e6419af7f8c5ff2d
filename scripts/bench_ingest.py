#!/usr/bin/env python
"""Ingest: sustained uploads per second through gunicorn on this machine (issue 7, goal 3).

For the embedded default (SQLite + SQLAlchemy broker) and PostgreSQL + Redis (when they
answer): a throw-away site, gunicorn with ``--web-workers`` sync workers, and **no Celery
worker**, so frames are only validated, stored, recorded and published (the enqueue, not
inference, is what is measured). Every upload is a unique 640x480 face JPEG (~50 KB) for the
demo neonate, so deduplication never short-cuts the work.

Two runs per backend, load generated from this process (its own CPU use is printed: it shares
the cores with the server):

* **closed loop**: ``--connections`` keep-alive clients upload back to back for ``--seconds``:
  the sustained rate the server reaches, with p50/p95 response times.
* **open loop** at each of ``--rates`` (default 200/s): uploads sent on schedule whatever the
  previous ones did; the rate achieved, errors and p50/p95 show whether the server keeps up.

The goal is met when the open loop at 200/s keeps up (>= 98% of the offered rate achieved) and no
run had an error. Afterwards the frames in the database and the messages waiting in the broker
are counted: both must equal the number of accepted uploads. ``--profile DIR`` samples the
gunicorn processes with py-spy during the closed loop and prints the top functions.

The last line is ``bench_ingest: embedded_rps=... postgres_redis_rps=... errors=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit

GOAL_RPS = 200.0


class Load:
    """Shared state of the sending threads: a counter for unique frames, results per upload."""

    def __init__(self, variants: list[bytes], prefix: str) -> None:
        self.variants = variants
        self.prefix = prefix
        self.lock = threading.Lock()
        self.next_index = 0
        self.results: list[tuple[float, float, object]] = []  # (start, seconds, status)

    def frame(self) -> bytes:
        with self.lock:
            index = self.next_index
            self.next_index += 1
        return benchkit.jpeg_tagged(self.variants[index % len(self.variants)], f"{self.prefix}-{index}")

    def record(self, start: float, seconds: float, status: object) -> None:
        with self.lock:
            self.results.append((start, seconds, status))


def _send(client: benchkit.Uploader, load: Load) -> None:
    body = client.body(load.frame())
    start = time.monotonic()
    try:
        status, _ = client.post(body)
    except OSError as exc:
        status = type(exc).__name__
    load.record(start, time.monotonic() - start, status)


def closed_loop(port: int, creds: dict, load: Load, connections: int, seconds: float) -> float:
    stop_at = time.monotonic() + seconds

    def sender() -> None:
        client = benchkit.Uploader(port, creds["token"], mrn=creds["mrn"])
        try:
            while time.monotonic() < stop_at:
                _send(client, load)
        finally:
            client.close()

    started = time.monotonic()
    benchkit.run_threads(sender, connections)
    return time.monotonic() - started


def open_loop(port: int, creds: dict, load: Load, rate: float, seconds: float, senders: int) -> float:
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    counter = iter(range(total))
    counter_lock = threading.Lock()

    def sender() -> None:
        client = benchkit.Uploader(port, creds["token"], mrn=creds["mrn"])
        try:
            while True:
                with counter_lock:
                    index = next(counter, None)
                # Past the window, stop: a server slower than the offered rate shows as a lower rate.
                if index is None or time.monotonic() > start + seconds:
                    return
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                _send(client, load)
        finally:
            client.close()

    benchkit.run_threads(sender, senders)
    return time.monotonic() - start


def summarise(label: str, load: Load, wall: float, cpu: dict[str, float]) -> tuple[float, int]:
    ok = [r for r in load.results if r[2] == 202]
    errors = [r for r in load.results if r[2] != 202]
    # Rate over the span in which uploads completed (excludes thread start-up).
    rps = len(ok) / wall if wall > 0 else 0.0
    times = [r[1] * 1000 for r in ok]
    kinds = {}
    for r in errors:
        kinds[str(r[2])] = kinds.get(str(r[2]), 0) + 1
    print(
        f"{label:<36} {rps:7.1f} uploads/s  ({len(ok)} in {wall:.1f} s), errors {len(errors)}"
        f"{' ' + json.dumps(kinds) if kinds else ''}; response {benchkit.spread(times)}"
    )
    if ok:
        per_upload = {key: seconds * 1000 / len(ok) for key, seconds in cpu.items()}
        total = sum(per_upload.values())
        cores = benchkit.available_cores()
        print(
            f"{'':<36} CPU per upload: {total:.1f} ms ("
            + ", ".join(f"{key} {value:.1f}" for key, value in per_upload.items())
            + f") -> at most {cores * 1000 / total:.0f} uploads/s if all {cores} cores were this benchmark's"
        )
    return rps, len(errors)


def stored_and_queued(data_dir: Path, database_url: str | None, redis_url: str | None) -> tuple[int, int]:
    if database_url:
        import psycopg2
        import redis

        connection = psycopg2.connect(database_url)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM triage_frame WHERE status = 'queued'")
                frames = int(cursor.fetchone()[0])
        finally:
            connection.close()
        return frames, int(redis.Redis.from_url(redis_url).llen("inference"))
    connection = sqlite3.connect(data_dir / "neopain.sqlite3", timeout=20)
    try:
        frames = int(connection.execute("SELECT COUNT(*) FROM triage_frame WHERE status = 'queued'").fetchone()[0])
    finally:
        connection.close()
    broker = sqlite3.connect(data_dir / "celery-broker.sqlite3", timeout=20)
    try:
        queued = int(broker.execute("SELECT COUNT(*) FROM kombu_message WHERE visible = 1").fetchone()[0])
    finally:
        broker.close()
    return frames, queued


def _load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _profile_start(args, name: str, master_pid: int, folder: Path):
    """``--profile``: py-spy samples every gunicorn process during the closed loop (needs ptrace)."""
    if not args.profile:
        return None
    import shutil
    import subprocess

    py_spy = shutil.which("py-spy", path=str(benchkit.BIN)) or shutil.which("py-spy")
    if py_spy is None:
        print("--profile: py-spy not installed (.venv/bin/pip install py-spy); not profiling")
        return None
    out = Path(args.profile) / f"ingest-{name.replace('+', '_')}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        py_spy,
        "record",
        "--pid",
        str(master_pid),
        "--subprocesses",
        "--format",
        "raw",
        "--rate",
        "200",
        "--nonblocking",
        "--nolineno",
        "--duration",
        str(int(args.seconds)),
        "--output",
        str(out),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # py-spy attaches before the load starts
    return process, out


def _profile_report(spy, lines: int) -> None:
    """Self time and inclusive time per function from py-spy's collapsed stacks."""
    import subprocess

    process, out = spy
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if not out.exists():
        print(f"--profile: py-spy wrote nothing ({out})")
        return
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        # --subprocesses prefixes each stack with its processes ("process PID:..."): not functions.
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        total += samples
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + samples
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
    # py-spy counts a thread blocked in a system call (a database round trip, a file being created)
    # as busy: these shares are of the workers' time, not only of their CPU.
    print(f"py-spy: {total} samples of the gunicorn processes (the run above paid py-spy's overhead), stacks in {out}")
    print("  self %   incl %  function")
    for frame, samples in sorted(own.items(), key=lambda item: -item[1])[:lines]:
        print(f"  {100 * samples / total:5.1f}   {100 * inclusive[frame] / total:5.1f}   {frame}")


def bench_backend(name: str, args, variants: list[bytes]) -> tuple[float, int]:
    with (
        benchkit.backend_stores(name, database="neopain_bench_ingest", redis_db=11) as (database_url, redis_url),
        benchkit.temp_dir("neopain-bench-ingest-", keep=args.keep) as folder,
        benchkit.Processes(folder / "logs") as procs,
    ):
        data_dir = folder / "data"
        env = benchkit.site_env(data_dir, database_url=database_url, redis_url=redis_url)
        creds = benchkit.site_setup(env)
        port = benchkit.free_port()
        web = procs.start("web", benchkit.gunicorn_argv(port, workers=args.web_workers, threads=args.threads), env)
        benchkit.wait_http(f"http://127.0.0.1:{port}/api/v1/health/", process=web)
        warm = Load(variants, f"warm-{name}")
        closed_loop(port, creds, warm, args.connections, 2.0)  # every gunicorn worker warm
        accepted = sum(1 for r in warm.results if r[2] == 202)
        best_rps, errors = 0.0, 0
        runs = [("closed", None)] + [("open", rate) for rate in args.rates]
        pids = {"web": benchkit.session_pids(web.pid)}
        if database_url:
            pids["postgres"] = benchkit.postgres_backend_pids("neopain_bench_ingest")
            pids["redis"] = benchkit.redis_server_pids()
        kept_up = False  # an open-loop run at >= the goal's rate kept up, without errors
        for index, (kind, rate) in enumerate(runs):
            load = Load(variants, f"{kind}-{rate}-{name}-{index}")
            spy = _profile_start(args, name, web.pid, folder) if kind == "closed" else None
            before = {key: benchkit.cpu_seconds(value) for key, value in pids.items()}
            client_cpu = time.process_time()
            if kind == "closed":
                wall = closed_loop(port, creds, load, args.connections, args.seconds)
                label = f"{name} closed loop, {args.connections} connections"
            else:
                wall = open_loop(port, creds, load, rate, args.seconds, args.connections * 4)
                label = f"{name} open loop at {rate:g}/s"
            cpu = {key: benchkit.cpu_seconds(value) - before[key] for key, value in pids.items()}
            cpu["load generator"] = time.process_time() - client_cpu
            rps, run_errors = summarise(label, load, wall, cpu)
            if spy is not None:
                _profile_report(spy, args.profile_lines)
            accepted += sum(1 for r in load.results if r[2] == 202)
            errors += run_errors
            if kind == "closed":
                best_rps = rps
            elif rps >= rate * 0.98 and not run_errors:
                best_rps = max(best_rps, rps)
                kept_up = kept_up or rate >= GOAL_RPS
        frames, queued = stored_and_queued(data_dir, database_url, redis_url)
        print(
            f"{name:<36} accepted {accepted}, frames queued in the database {frames}, "
            f"messages waiting in the broker {queued}" + ("" if frames == queued == accepted else "  <- MISMATCH")
        )
        if web.poll() is not None:
            print(procs.log("web"))
    # Sustained: uploads offered at the goal's rate are all answered on time (open loop, >= 98% of
    # the offered rate achieved), and no run had an error.
    verdict = "met" if kept_up and not errors else "NOT met"
    print(
        f"{name:<36} goal >= {GOAL_RPS:.0f} uploads/s sustained (open loop at {GOAL_RPS:.0f}/s kept up), "
        f"zero errors: {verdict}  (load average now {_load_average()})"
    )
    return best_rps, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 s per run instead of 12")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--backends", default="embedded,postgres+redis")
    # As many sync workers as cores (`make run`'s WEB_CONCURRENCY=2): the upload path is CPU-bound, and a
    # third worker on 2 cores measured the same rate with a longer tail (docs/performance.md, section 3).
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (>1: gthread)")
    parser.add_argument("--connections", type=int, default=6, help="closed-loop client connections")
    parser.add_argument("--rates", default="200", help="open-loop rates, comma-separated")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the gunicorn processes in the closed loop; stacks in DIR"
    )
    parser.add_argument("--profile-lines", type=int, default=25)
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (6.0 if args.quick else 12.0)
    args.rates = [float(r) for r in args.rates.split(",") if r]
    print(f"# machine: {benchkit.machine_line()}")
    print(
        f"# gunicorn {args.web_workers} workers x {args.threads} threads; no Celery worker (frames only queued); "
        f"unique 640x480 JPEG uploads for one neonate; load generated on the same cores"
    )
    variants = benchkit.face_variants()
    results = {}
    total_errors = 0
    for name in args.backends.split(","):
        if name == "postgres+redis" and not (benchkit.postgres_available() and benchkit.redis_available()):
            print(f"{name} skipped: PostgreSQL or Redis does not answer")
            continue
        results[name], errors = bench_backend(name, args, variants)
        total_errors += errors
    figures = " ".join(f"{key.replace('+', '_')}_rps={value:.1f}" for key, value in results.items())
    print(f"bench_ingest: {figures} errors={total_errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
