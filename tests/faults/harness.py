"""Throwaway PostgreSQL and Redis servers and the app's own processes, for fault injection.

The fault tests never touch the shared services on 5432/6379 (other test runs use them): each
session starts a private PostgreSQL cluster (initdb into a temporary folder, a free port, its own
socket folder) and a private Redis, which the tests may stop, kill and restart at will. The app
runs against them as real subprocesses (Celery workers, gunicorn, ``manage.py`` and the helper
``tests/faults/agent.py``), configured only through the environment: ``DATABASE_URL``,
``REDIS_URL``, ``NEOPAIN_DATA_DIR``. Every wait is bounded; every process is stopped in ``finally``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.support import environ_without_app_settings

ROOT = Path(__file__).resolve().parents[2]
PG_BIN_CANDIDATES = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"))]


class HarnessError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, *, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; HarnessError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the service may not be up yet
            last_error = exc
        time.sleep(interval)
    raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pg_bin() -> Path | None:
    for folder in PG_BIN_CANDIDATES:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def prerequisites_missing() -> str | None:
    if pg_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found"
    if shutil.which("redis-server") is None:
        return "redis-server not found"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to own the private cluster"
    return None


# --- PostgreSQL -----------------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of our own: ``start()``, ``stop()``, ``restart()``, ``destroy()``.

    PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres`` user.
    Durability settings are off (fsync): the tests stop the server, they do not pull the plug.
    """

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="neopain-faults-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.log = self.base / "postgres.log"
        self.sockets.mkdir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            entry = pwd.getpwnam("postgres")
            for path in (self.base, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.base.chmod(0o755)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=timeout, cwd="/")
        if result.returncode != 0:
            raise HarnessError(
                f"{args[0]} failed ({result.returncode}): {result.stdout}{result.stderr}"
                f"{self.log.read_text()[-2000:] if self.log.exists() else ''}"
            )
        return result

    def init(self) -> PrivatePostgres:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            timeout=120,
        )
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )
        wait_for(lambda: port_open(self.port), timeout=30, what="PostgreSQL to listen")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", timeout=90)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres"):
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, connect_timeout=5
        )
        connection.autocommit = True
        return connection

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def query(self, sql: str, dbname: str, params=None) -> list[tuple]:
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            connection.close()


# --- Redis ------------------------------------------------------------------------------------


class PrivateRedis:
    """A memory-only Redis on a free port, as a child process we can stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="neopain-faults-redis-"))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: port_open(self.port), timeout=20, what="Redis to listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        wait_for(lambda: not port_open(self.port), timeout=10, what="Redis to stop")

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


# --- the app's processes --------------------------------------------------------------------------


def app_env(*, database_url: str, redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a subprocess of the app: only what it needs, nothing from the outer test run."""
    return {
        **environ_without_app_settings(),
        "DJANGO_SETTINGS_MODULE": "neopain_site.settings",
        "NEOPAIN_ENV": "test",
        "NEOPAIN_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "NEOPAIN_SALIENCY": "0",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def run_python(args: list[str], env: dict[str, str], *, timeout: float = 180) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise HarnessError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result.stdout


def agent(command: str, env: dict[str, str], *args: str, timeout: float = 180) -> dict:
    """Run ``tests/faults/agent.py COMMAND`` and return the JSON it prints last."""
    out = run_python(["-m", "tests.faults.agent", command, *args], env, timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


class AppProcess:
    """A long-running subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def children(self) -> list[int]:
        result = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True)
        return [int(pid) for pid in result.stdout.split()]

    def kill9(self) -> None:
        """SIGKILL to the whole group: the process and its children die without any cleanup."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=15)

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
        except ProcessLookupError:
            pass


def start_worker(
    env: dict[str, str], log_dir: Path, *, name: str = "worker", module: str | None = None, ready_timeout: float = 90
) -> AppProcess:
    """A real ``celery worker`` (prefork, one child) on the inference and default queues."""
    entry = ["-m", module] if module else ["-m", "celery"]
    worker = AppProcess(
        name,
        [
            sys.executable,
            *entry,
            "-A",
            "neopain_site",
            "worker",
            "-Q",
            "inference,clips,default",
            "-c",
            "1",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=INFO",
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
        ],
        env,
        log_dir,
    )
    try:
        wait_for(
            lambda: " ready." in worker.log(100_000) or not worker.alive(),
            timeout=ready_timeout,
            what=f"{name} to be ready",
        )
    except HarnessError:
        worker.stop()
        raise
    if not worker.alive():
        raise HarnessError(f"{name} exited:\n{worker.log()}")
    return worker


def start_web(env: dict[str, str], log_dir: Path) -> tuple[AppProcess, str]:
    """gunicorn serving the app on a free port; returns (process, base URL)."""
    port = free_port()
    web = AppProcess(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "neopain_site.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--access-logfile",
            "-",
        ],
        env,
        log_dir,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_open(port) or not web.alive(), timeout=60, what="gunicorn to listen")
    except HarnessError:
        web.stop()
        raise
    if not web.alive():
        raise HarnessError(f"gunicorn exited:\n{web.log()}")
    return web, base


# --- HTTP ----------------------------------------------------------------------------------------


def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    timeout: float = 30,
) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Token {token}")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    for name, (filename, content, content_type) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload(base: str, token: str, mrn: str, image: bytes, *, timeout: float = 30) -> tuple[int, bytes, dict]:
    body, content_type = multipart({"neonate": mrn}, {"image": ("frame.png", image, "image/png")})
    return http("POST", f"{base}/api/v1/frames/", token=token, body=body, content_type=content_type, timeout=timeout)


# --- reading the outcome straight from the database -----------------------------------------------


def frame_report(pg: PrivatePostgres, dbname: str) -> dict:
    """Frames by status, and frames with no or several predictions (lost / duplicated)."""
    statuses = dict(pg.query("SELECT status, count(*) FROM triage_frame GROUP BY status", dbname))
    per_frame = pg.query(
        "SELECT f.id, count(p.id) FROM triage_frame f LEFT JOIN triage_prediction p ON p.frame_id = f.id GROUP BY f.id",
        dbname,
    )
    return {
        "frames": len(per_frame),
        "statuses": statuses,
        "predictions": sum(n for _, n in per_frame),
        "lost": sum(1 for _, n in per_frame if n == 0),
        "duplicated": sum(1 for _, n in per_frame if n > 1),
    }


def unfinished(pg: PrivatePostgres, dbname: str) -> int:
    return pg.query("SELECT count(*) FROM triage_frame WHERE status IN ('queued', 'processing')", dbname)[0][0]
