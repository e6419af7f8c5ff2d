"""Fixtures for the fault-injection suite (``-m faults``).

``private_stack`` (once per session): a private PostgreSQL cluster and a private Redis on free
ports, a migrated template database and a small real model bundle. ``fault_app`` (per test): a
fresh database copied from the template, its own data folder (media, logs), the seed (unit,
neonate, camera token, active model) and the environment that points the app's subprocesses at
all of that. Processes a test starts through ``fault_app.track(...)`` are stopped afterwards,
whatever happened.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults import harness

# In-process fault tests reuse the hardening fixtures (people, a real model, the publish recorder).
# (The people, ``neonate`` and ``browser_for`` come from tests/conftest.py.)
from tests.hardening.conftest import (  # noqa: F401
    enqueued,
    media_root,
    painnet_bundle,
    real_model,
)


@dataclass
class PrivateStack:
    postgres: harness.PrivatePostgres
    redis: harness.PrivateRedis
    template: str
    bundle: Path
    base_env: dict
    seed: dict


@pytest.fixture(scope="session")
def private_stack(tmp_path_factory):
    missing = harness.prerequisites_missing()
    if missing:
        pytest.skip(f"fault tests need private PostgreSQL and Redis servers: {missing}")
    postgres = harness.PrivatePostgres()
    redis = harness.PrivateRedis()
    try:
        postgres.init().start()
        redis.start()
        template = "faults_template"
        postgres.execute(f"CREATE DATABASE {template}")
        data_dir = tmp_path_factory.mktemp("faults-template")
        env = harness.app_env(database_url=postgres.url(template), redis_url=redis.url(), data_dir=data_dir)
        harness.run_python(["manage.py", "migrate", "--noinput", "-v", "0"], env, timeout=300)
        bundle = tmp_path_factory.mktemp("faults-models") / "painnet-faults.pt"
        harness.agent("bundle", env, str(bundle))
        # Seeded once, into the template: every test's copy starts with the same unit, tokens and model.
        seed = harness.agent("seed", env, "--bundle", str(bundle))
        yield PrivateStack(postgres=postgres, redis=redis, template=template, bundle=bundle, base_env=env, seed=seed)
    finally:
        redis.destroy()
        postgres.destroy()


@dataclass
class FaultApp:
    stack: PrivateStack
    dbname: str
    data_dir: Path
    env: dict
    seed: dict = field(default_factory=dict)
    processes: list = field(default_factory=list)

    @property
    def pg(self) -> harness.PrivatePostgres:
        return self.stack.postgres

    @property
    def redis(self) -> harness.PrivateRedis:
        return self.stack.redis

    @property
    def media(self) -> Path:
        return self.data_dir / "media"

    def track(self, process: harness.AppProcess) -> harness.AppProcess:
        self.processes.append(process)
        return process

    def worker(self, name: str = "worker", **kwargs) -> harness.AppProcess:
        return self.track(harness.start_worker(self.env, self.data_dir, name=name, **kwargs))

    def web(self) -> str:
        process, base = harness.start_web(self.env, self.data_dir)
        self.track(process)
        return base

    def agent(self, command: str, *args: str, timeout: float = 240) -> dict:
        return harness.agent(command, self.env, *args, timeout=timeout)

    def sweep(self, stuck_seconds: int) -> str:
        return harness.run_python(
            ["manage.py", "sweep_frames", "--stuck-seconds", str(stuck_seconds)], self.env, timeout=120
        )

    def report(self) -> dict:
        return harness.frame_report(self.pg, self.dbname)

    def unfinished(self) -> int:
        return harness.unfinished(self.pg, self.dbname)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path})\n{p.log(3000)}" for p in self.processes)


@pytest.fixture
def fault_app(private_stack, tmp_path):
    stack = private_stack
    if not stack.postgres.running():  # a test that stopped it and failed before restarting
        stack.postgres.start()
    if not harness.port_open(stack.redis.port):
        stack.redis.start()
    dbname = f"faults_{uuid.uuid4().hex[:10]}"
    stack.postgres.execute(f"CREATE DATABASE {dbname} TEMPLATE {stack.template}")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # Redis db 0 is this session's alone; flush what an earlier test left queued.
    env = harness.app_env(database_url=stack.postgres.url(dbname), redis_url=stack.redis.url(), data_dir=data_dir)
    app = FaultApp(stack=stack, dbname=dbname, data_dir=data_dir, env=env)
    try:
        _flush_redis(stack.redis)
        app.seed = dict(stack.seed)
        yield app
    finally:
        for process in reversed(app.processes):
            process.stop()
        if not stack.postgres.running():
            stack.postgres.start()
        if not harness.port_open(stack.redis.port):
            stack.redis.start()
        try:
            stack.postgres.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        except Exception:
            pass
        shutil.rmtree(data_dir, ignore_errors=True)


def _flush_redis(redis: harness.PrivateRedis) -> None:
    import redis as redis_client

    client = redis_client.Redis(host="127.0.0.1", port=redis.port, socket_timeout=5)
    try:
        client.flushall()
    finally:
        client.close()
