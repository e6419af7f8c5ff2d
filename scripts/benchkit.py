"""Shared pieces of the ``scripts/bench_*.py`` benchmarks (not itself a benchmark: ``make bench``
runs ``bench_*.py`` only).

Frames, a throw-away Django site (its own data dir, optionally its own PostgreSQL database and
Redis db number), real server processes (gunicorn, celery) that are always stopped, and the
figures' formatting. Nothing here imports torch or Django at import time, so a load generator
can use it without paying for either.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
BIN = Path(PYTHON).parent
POSTGRES_ADMIN_URL = os.environ.get("NEOPAIN_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS_BASE_URL = os.environ.get("NEOPAIN_BENCH_REDIS", "redis://127.0.0.1:6379")


# --------------------------------------------------------------------------- figures


def pct(values: Sequence[float], q: float) -> float:
    """Percentile ``q`` (0-100) of ``values``; NaN when empty."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def spread(values: Sequence[float], unit: str = "ms") -> str:
    """``p50/p95/max`` of ``values`` as one short string."""
    if not len(values):
        return "n/a"
    return f"p50 {pct(values, 50):.1f} {unit}, p95 {pct(values, 95):.1f} {unit}, max {max(values):.1f} {unit}"


def machine_line() -> str:
    """The machine the figures come from: CPU model, cores this process may use, memory, load."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{model}, {cores} cores{memory}, Python {platform.python_version()}, load average {load}"


def gpu_line() -> str:
    """The CUDA card if torch sees one, else the sentence the issue asks for."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "GPU: not available on this machine (torch missing)"
    if not torch.cuda.is_available():
        return "GPU: not available on this machine"
    return f"GPU: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"


# --------------------------------------------------------------------------- frames


def face_variants(count: int = 16, *, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[bytes]:
    """Bedside-camera-sized JPEGs of a real face at varied scale, position, exposure, tilt.

    scikit-image's public-domain astronaut, as in ``bench_inference.py``.
    """
    from skimage import data as skdata

    face = Image.fromarray(skdata.astronaut())
    rng = np.random.default_rng(seed)
    width, height = size
    variants: list[bytes] = []
    for i in range(count):
        side = int(rng.integers(int(height * 0.55), int(height * 0.98)))
        canvas = Image.new("RGB", size, tuple(int(v) for v in rng.integers(20, 90, 3)))
        tile = ImageEnhance.Brightness(face.resize((side, side))).enhance(float(rng.uniform(0.6, 1.3)))
        canvas.paste(tile, (int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))))
        if i % 5 == 4:
            canvas = canvas.rotate(float(rng.uniform(-12, 12)), fillcolor=(40, 40, 40))
        buffer = io.BytesIO()
        canvas.save(buffer, format="JPEG", quality=90)
        variants.append(buffer.getvalue())
    return variants


def jpeg_tagged(jpeg: bytes, tag: str) -> bytes:
    """The same JPEG with a comment segment carrying ``tag``: new bytes (new sha256), same pixels.

    Uploads are deduplicated by their hash, so every benchmark frame must be unique.
    """
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    body = tag.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def unique_frames(count: int, *, prefix: str, variants: Sequence[bytes] | None = None) -> list[bytes]:
    """``count`` distinct JPEG byte strings cycling through ``variants``."""
    variants = list(variants) if variants is not None else face_variants()
    return [jpeg_tagged(variants[i % len(variants)], f"{prefix}-{i}") for i in range(count)]


# --------------------------------------------------------------------------- the site


def site_env(
    data_dir: Path,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment for a throw-away NeoPain site: its own data dir, optionally PostgreSQL + Redis.

    Without ``database_url``/``redis_url`` it is the embedded default (SQLite + SQLAlchemy broker
    inside ``data_dir``), whatever the caller's shell has set.
    """
    env = {
        key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "neopain_site.settings",
            "NEOPAIN_ENV": "development",
            "DJANGO_DEBUG": "false",
            "NEOPAIN_DATA_DIR": str(data_dir),
            "NEOPAIN_LOG_LEVEL": env.get("NEOPAIN_BENCH_LOG_LEVEL", "WARNING"),
            "OMP_WAIT_POLICY": "PASSIVE",
            "PYTHONPATH": str(ROOT),
        }
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def django_inprocess(env: dict[str, str]) -> None:
    """Configure this process as the site described by ``env`` and call ``django.setup()``."""
    for key in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(key, None)
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def manage(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    """Run ``manage.py`` for the site in ``env``; return stdout (raise with its output on failure)."""
    result = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def postgres_available() -> bool:
    """True when the bench PostgreSQL answers (psycopg2 connect to the admin database)."""
    try:
        import psycopg2

        psycopg2.connect(f"{POSTGRES_ADMIN_URL}/postgres", connect_timeout=3).close()
        return True
    except Exception:
        return False


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(f"{REDIS_BASE_URL}/0", socket_connect_timeout=2).ping())
    except Exception:
        return False


def _bench_database(name: str, *, create: bool) -> None:
    """Drop the database ``name`` (bench databases only), then create it again if ``create``."""
    import psycopg2

    if not name.startswith("neopain_bench"):
        raise ValueError(f"refusing to drop {name!r}: bench databases are named neopain_bench*")
    connection = psycopg2.connect(f"{POSTGRES_ADMIN_URL}/postgres")
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def postgres_recreate(name: str) -> str:
    """Drop and create the database ``name`` (bench databases only); return its URL."""
    _bench_database(name, create=True)
    return f"{POSTGRES_ADMIN_URL}/{name}"


def postgres_drop(name: str) -> None:
    _bench_database(name, create=False)


def redis_flush(db: int) -> str:
    """Empty Redis db number ``db`` (bench dbs only, 11-15); return its URL."""
    import redis

    if not 11 <= db <= 15:
        raise ValueError("bench Redis databases are 11-15")
    url = f"{REDIS_BASE_URL}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


@contextlib.contextmanager
def backend_stores(backend: str, *, database: str, redis_db: int) -> Iterator[tuple[str | None, str | None]]:
    """``(database_url, redis_url)`` for a benchmark's ``backend``: for ``"postgres+redis"`` a fresh
    bench database ``database`` and an empty Redis db ``redis_db``, dropped and emptied on leaving;
    otherwise ``(None, None)`` (the site's embedded SQLite and broker)."""
    database_url = redis_url = None
    if backend == "postgres+redis":
        database_url = postgres_recreate(database)
        redis_url = redis_flush(redis_db)
    try:
        yield database_url, redis_url
    finally:
        if database_url:
            postgres_drop(database)
        if redis_url:
            redis_flush(redis_db)


# --------------------------------------------------------------------------- models


def timing_bundles(folder: Path) -> dict[str, Path]:
    """The two classifiers the benchmarks time, written under ``folder``: the bootstrap bundle and a
    PainNet mobilenet_v2 (ImageNet backbone, untrained head, seed 0). Imports torch on call."""
    import torch

    from inference.bootstrap import build_bootstrap_bundle
    from inference.bundle import save_bundle
    from inference.painnet import PainNet

    paths = {"bootstrap-fer-proxy": folder / "bootstrap.pt", "painnet-mobilenet_v2": folder / "painnet.pt"}
    build_bootstrap_bundle(paths["bootstrap-fer-proxy"])
    torch.manual_seed(0)
    save_bundle(
        paths["painnet-mobilenet_v2"],
        model=PainNet("mobilenet_v2", pretrained=True).eval(),
        metadata={
            "name": "bench-painnet",
            "version": "0",
            "architecture": "painnet",
            "description": "ImageNet backbone, untrained head: for timing only",
        },
    )
    return paths


# --------------------------------------------------------------------------- processes


def run_threads(target: Callable[[], None], count: int) -> None:
    """Run ``target`` in ``count`` daemon threads at once and wait for all of them (a load generator's senders)."""
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def free_port() -> int:
    """A TCP port nobody listens on right now (high range, picked by the kernel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Server processes started by a benchmark; ``stop_all`` (or leaving the ``with``) ends them.

    Each runs in its own session, so stopping it also stops its children (gunicorn and celery
    workers) and nothing else on the machine.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.running.append((name, process))
        return process

    def stop(self, name: str, timeout: float = 20) -> None:
        for entry in [e for e in self.running if e[0] == name]:
            _stop(entry[1], timeout)
            self.running.remove(entry)

    def stop_all(self) -> None:
        while self.running:
            _name, process = self.running.pop()
            _stop(process, 20)

    def log(self, name: str, tail: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-tail:])


def _stop(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def gunicorn_argv(port: int, *, workers: int, threads: int = 1, worker_class: str | None = None) -> list[str]:
    argv = [
        str(BIN / "gunicorn"),
        "neopain_site.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "120",
        "--log-level",
        "warning",
    ]
    if threads > 1 or worker_class == "gthread":
        argv += ["--worker-class", "gthread", "--threads", str(threads)]
    elif worker_class:
        argv += ["--worker-class", worker_class]
    return argv


def celery_argv(*, concurrency: int = 1, queues: str = "inference,default", pool: str = "prefork") -> list[str]:
    return [
        str(BIN / "celery"),
        "-A",
        "neopain_site",
        "worker",
        "-Q",
        queues,
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=INFO",
    ]


def wait_http(url: str, *, timeout: float = 60, process: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers (any HTTP status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def multipart_body(fields: dict[str, str], file_field: str, filename: str, content: bytes, boundary: str) -> bytes:
    """A ``multipart/form-data`` body (the camera's upload), built once per request without a client library."""
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


#: Where throw-away sites live: like a deployment's data folder, not /tmp. On this project's
#: machines creating a file under /tmp costs ~0.8 ms (measured; 0.025 ms anywhere else on the same
#: disk), which is not what a worker or web process pays for its media folder.
BENCH_DIR = Path(os.environ.get("NEOPAIN_BENCH_DIR") or ROOT / "var" / "bench")


@contextlib.contextmanager
def temp_dir(prefix: str, keep: bool = False) -> Iterator[Path]:
    import tempfile

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=BENCH_DIR))
    try:
        yield folder
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- HTTP client


class Uploader:
    """A minimal keep-alive HTTP/1.1 client for frame uploads (one per thread).

    ``http.client`` with pre-built multipart bodies: a load generator sharing 2 cores with the
    server must spend as little CPU per request as possible (no requests/httpx machinery).
    """

    BOUNDARY = "neopainbenchboundary7f3a"

    def __init__(self, port: int, token: str, *, mrn: str, host: str = "127.0.0.1", timeout: float = 30) -> None:
        import http.client

        self.connection = http.client.HTTPConnection(host, port, timeout=timeout)
        self.headers = {
            "Authorization": f"Token {token}",
            "Content-Type": f"multipart/form-data; boundary={self.BOUNDARY}",
            "Accept": "application/json",
            "Host": f"{host}:{port}",
        }
        self.mrn = mrn

    def body(self, jpeg: bytes, name: str = "frame.jpg") -> bytes:
        return multipart_body({"neonate": self.mrn}, "image", name, jpeg, self.BOUNDARY)

    def post(self, body: bytes, path: str = "/api/v1/frames/") -> tuple[int, bytes]:
        """POST ``body``; returns (status, response bytes). Reconnects once on a closed connection."""
        import http.client

        for attempt in (1, 2):
            try:
                self.connection.request("POST", path, body=body, headers=self.headers)
                response = self.connection.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.connection.close()
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def site_setup(env: dict[str, str]) -> dict[str, str]:
    """Migrate and run ``neopain_setup`` for the site in ``env``; return the device token and MRN."""
    import re

    manage(env, "migrate", "--noinput", "-v", "0")
    out = manage(env, "neopain_setup")
    match = re.search(r"Device token for \S+: ([0-9a-f]{40})", out)
    if not match:
        raise RuntimeError(f"no device token in neopain_setup output:\n{out}")
    return {"token": match.group(1), "mrn": "DEMO-0001"}


# --------------------------------------------------------------------------- CPU accounting


def session_pids(session_id: int) -> list[int]:
    """Processes of a session (a server started by :class:`Processes` and its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id:  # field 6 of stat: session id
            pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (those still alive)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def postgres_backend_pids(database: str) -> list[int]:
    """Server processes serving connections to ``database`` (same machine: their CPU is ours to count)."""
    import psycopg2

    connection = psycopg2.connect(f"{POSTGRES_ADMIN_URL}/postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))
            return [int(row[0]) for row in cursor.fetchall()]
    finally:
        connection.close()


def redis_server_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "redis-server":
                    pids.append(int(entry.name))
    return pids


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
