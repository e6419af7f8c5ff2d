"""The bedside agent (``python -m bedside``) against a running NeoPain: live server + real worker.

A generated video with scripted expression changes goes through the agent; each scripted change
becomes a frame with a verdict. An outage: the agent exits 3 with the keyframes spooled, then the
server is up and a second run on the same spool and video leaves the server with exactly those
keyframes, none lost, none twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bedside
from bedside.spool import entry_read
from tests.factories import DeviceFactory, NeonateFactory, UnitFactory, UserFactory, api_token_for
from tests.inference.expression_clips import ExpressionScript, change_times, write_expression_clip
from tests.inference.inference_helpers import write_scene_clip
from tests.platform.test_e2e import BASE_DIR, celery_worker_process, worker_log  # noqa: F401 - the fixture
from triage import services
from triage.models import Device, Frame, Neonate, Role

DEADLINE_SECONDS = 240


def camera_for(mrn: str) -> tuple[str, Neonate]:
    unit = UnitFactory(name=f"NICU {mrn}", code=mrn.lower())
    neonate = NeonateFactory(mrn=mrn, unit=unit)
    camera = DeviceFactory(unit=unit, user=UserFactory(username=f"cam-{mrn.lower()}", role=Role.DEVICE, unit=unit))
    return api_token_for(camera.user), neonate


def run_agent(*, server: str, token: str, mrn: str, video: Path, spool: Path, detector: str, drain_timeout: float):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEOPAIN_AGENT_", "DJANGO_"))}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bedside",
            "--server",
            server,
            "--token",
            token,
            "--neonate",
            mrn,
            "--source",
            str(video),
            "--spool",
            str(spool),
            "--once",
            "--drain-timeout",
            str(drain_timeout),
            "--detector",
            detector,
        ],
        cwd=BASE_DIR,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed again when the block ends


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_scripted_expression_changes_become_frames_with_verdicts(
    live_server,
    celery_worker_process,  # noqa: F811 - the fixture imported above
    bootstrap_bundle,
    tmp_path,
):
    token, neonate = camera_for("BED-E2E")
    bundle = tmp_path / "bootstrap.pt"
    shutil.copyfile(bootstrap_bundle, bundle)
    services.model_version_register(bundle_path=bundle, status="active")
    script = ExpressionScript(expression="eyes", switches=(3.0, 6.0, 9.0), seconds=12.0, ramp_s=0.2)
    video = tmp_path / f"eyes{script.suffix}"
    write_expression_clip(video, script)

    run = run_agent(
        server=live_server.url,
        token=token,
        mrn=neonate.mrn,
        video=video,
        spool=tmp_path / "spool",
        detector="retinaface",
        drain_timeout=60,
    )
    assert run.returncode == 0, run.stderr

    deadline = time.monotonic() + DEADLINE_SECONDS
    while Frame.objects.filter(neonate=neonate, status__in=["queued", "processing"]).exists():
        assert time.monotonic() < deadline, worker_log(celery_worker_process)
        assert celery_worker_process.poll() is None, worker_log(celery_worker_process)
        time.sleep(0.5)
    frames = list(Frame.objects.filter(neonate=neonate).order_by("captured_at").prefetch_related("predictions"))
    start = frames[0].captured_at
    offsets = {round((f.captured_at - start).total_seconds(), 2): f for f in frames}
    for change in change_times(script):
        # Each scripted change is a keyframe within 2 s (the online rule decides within its persistence).
        caught = [f for t, f in offsets.items() if change <= t <= change + 2.0]
        assert caught, f"change at {change} s not sent: {sorted(offsets)}\n{run.stderr}"
        frame = caught[0]
        assert frame.status == "done", (frame.status, frame.reason, worker_log(celery_worker_process))
        prediction = frame.predictions.get()
        assert prediction.label in ("pain", "nonpain") and prediction.routed_to in ("auto", "nurse")
    assert f"sent={len(frames)} duplicates=0 spooled=0 rejected=0" in run.stderr


@pytest.mark.django_db(transaction=True)
def test_an_outage_loses_no_keyframe_and_stores_none_twice(live_server, tmp_path):
    token, neonate = camera_for("BED-OUT")
    video = tmp_path / "scenes.mp4"
    write_scene_clip(video, scenes=4, frames_per_scene=60, fps=15.0)
    spool = tmp_path / "spool"
    options = {"token": token, "mrn": neonate.mrn, "video": video, "spool": spool, "detector": "none"}

    down = run_agent(server=closed_port_url(), drain_timeout=1, **options)

    assert down.returncode == 3, down.stderr
    spooled = {hashlib.sha256(entry_read(p).jpeg).hexdigest(): entry_read(p) for p in spool.glob("*.kf")}
    assert len(spooled) == 4, down.stderr  # the first frame and three scene changes
    assert not Frame.objects.filter(neonate=neonate).exists()

    up = run_agent(server=live_server.url, drain_timeout=60, **options)

    assert up.returncode == 0, up.stderr
    assert not list(spool.glob("*.kf"))
    stored = list(Frame.objects.filter(neonate=neonate))
    token_user, _ = services.api_token_authenticate(key=token)
    assert sorted(f.sha256 for f in stored) == sorted(spooled), "exactly the spooled keyframes, each once"
    for frame in stored:
        assert frame.captured_at == spooled[frame.sha256].captured_at
        assert frame.device is not None and frame.device.user == token_user
    assert "sent=4" in up.stderr and "spooled=0 rejected=0" in up.stderr
    camera = Device.objects.get(user=token_user)  # the agent's heartbeat: device health
    assert (camera.agent_version, camera.spool_backlog, camera.neonate) == (bedside.__version__, 4, neonate)
