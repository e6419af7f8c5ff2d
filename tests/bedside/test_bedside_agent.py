"""The bedside agent against a stand-in server: spool first, delete after 2xx, reject 4xx, retry the
rest with backoff and Retry-After, --once exit codes, eviction, damaged and half-written entries."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bedside import uplink
from bedside.__main__ import main
from bedside.agent import EXIT_NOT_DRAINED, EXIT_OK, Agent, AgentConfig
from bedside.source import Source, SourceError
from bedside.spool import Spool, entry_read
from bedside.uplink import Answer, backoff_seconds, retry_after_seconds

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch):
    monkeypatch.setattr(uplink, "BACKOFF_BASE_S", 0.05)
    monkeypatch.setattr(uplink, "BACKOFF_MAX_S", 0.2)


def agent_for(server_url: str, video: Path, spool: Path, **options) -> Agent:
    config = AgentConfig(
        server=server_url,
        token="camera-token",
        neonate="BED-0001",
        source=Source.parse(str(video)),
        spool_dir=spool,
        once=True,
        drain_timeout_s=options.pop("drain_timeout_s", 20.0),
        detector="none",
        **options,
    )
    return Agent(config)


def test_a_file_goes_through_the_spool_to_the_server_once(fake_server, scene_video, tmp_path, caplog):
    caplog.set_level("INFO", logger="bedside")
    agent = agent_for(fake_server.url, scene_video, tmp_path / "spool")

    assert agent.run() == EXIT_OK

    assert len(fake_server.frames) == 4  # t=0 heartbeat + the changes at 4, 8, 12 s
    assert {u["token"] for u in fake_server.uploads} == {"Token camera-token"}
    times = sorted(datetime.fromisoformat(u["captured_at"]) for u in fake_server.uploads)
    assert [round((t - times[0]).total_seconds()) for t in times] == [0, 4, 8, 12]
    assert agent.spool.pending() == []
    assert fake_server.heartbeats and fake_server.heartbeats[0]["neonate"] == "BED-0001"
    assert "summary: read=240 keyframes=4 sent=4 duplicates=0 spooled=0 rejected=0 evicted=0" in caplog.text
    assert caplog.text.count("keyframe spooled") == 4 and caplog.text.count("keyframe sent") == 4


def test_the_file_replayed_is_stored_once_and_counted_as_duplicates(fake_server, scene_video, tmp_path, caplog):
    caplog.set_level("INFO", logger="bedside")
    assert agent_for(fake_server.url, scene_video, tmp_path / "a").run() == EXIT_OK
    assert agent_for(fake_server.url, scene_video, tmp_path / "b").run() == EXIT_OK

    assert len(fake_server.frames) == 4 and len(fake_server.uploads) == 8
    assert "sent=0 duplicates=4 spooled=0" in caplog.text


def test_server_errors_are_retried_honouring_retry_after(fake_server, scene_video, tmp_path, monkeypatch):
    waits = []
    real = uplink.backoff_seconds

    def recorded(attempt, *, retry_after_s=None, rng=None):
        waits.append((attempt, retry_after_s))
        return min(real(attempt, retry_after_s=retry_after_s, rng=rng), 0.3)

    monkeypatch.setattr("bedside.agent.backoff_seconds", recorded)
    fake_server.script = [
        (503, {"Retry-After": "7"}, b'{"detail": "down"}'),
        (429, {}, b'{"detail": "slow down"}'),
        (408, {}, b"{}"),
        (500, {}, b"{}"),
    ]

    assert agent_for(fake_server.url, scene_video, tmp_path / "spool").run() == EXIT_OK

    assert len(fake_server.frames) == 4
    assert waits[:4] == [(1, 7.0), (2, None), (3, None), (4, None)]
    first = [u["sha256"] for u in fake_server.uploads[:5]]
    assert len(set(first)) == 1, "the oldest keyframe is retried until it is accepted"


def test_a_refused_keyframe_moves_to_rejected_with_the_answer(fake_server, scene_video, tmp_path):
    fake_server.script = [(400, {}, b'{"neonate": ["No active neonate with MRN \'BED-0001\' in your unit."]}')]
    agent = agent_for(fake_server.url, scene_video, tmp_path / "spool")

    assert agent.run() == EXIT_OK

    rejected = sorted((tmp_path / "spool" / "rejected").iterdir())
    assert [p.suffix for p in rejected] == [".json", ".kf"]
    answer = json.loads(rejected[0].read_text())
    assert answer["status"] == 400 and "No active neonate" in answer["answer"]
    assert entry_read(rejected[1]).neonate == "BED-0001"
    assert len(fake_server.frames) == 3 and agent.counters.rejected == 1


def test_an_unreachable_server_exits_3_with_the_keyframes_spooled(scene_video, tmp_path, fake_server):
    url = fake_server.url
    fake_server.shutdown()
    fake_server.server_close()
    agent = agent_for(url, scene_video, tmp_path / "spool", drain_timeout_s=0.5)

    assert agent.run() == EXIT_NOT_DRAINED
    assert len(agent.spool.pending()) == 4


def test_the_spool_evicts_the_oldest_past_its_cap(tmp_path, caplog):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    size = (
        Spool(tmp_path / "probe").add(neonate="M", captured_at=start, reason="change", jpeg=bytes(500)).stat().st_size
    )
    spool = Spool(tmp_path / "spool", max_bytes=3 * size)  # room for exactly three
    for k in range(5):
        spool.add(neonate="M", captured_at=start + timedelta(seconds=k), reason="change", jpeg=bytes([k]) * 500)

    kept = [entry_read(p).captured_at for p in spool.pending()]
    assert kept == [start + timedelta(seconds=k) for k in (2, 3, 4)]
    assert spool.evicted == 2 and caplog.text.count("evicting the oldest") == 2


def test_a_half_written_or_damaged_entry_is_never_sent(tmp_path):
    spool = Spool(tmp_path)
    good = spool.add(neonate="M", captured_at=datetime(2026, 1, 1, tzinfo=UTC), reason="change", jpeg=b"\xff\xd8jpeg")
    (tmp_path / ".tmp-00000000000000001-aaaa.kf").write_bytes(b'{"neonate": "M"')  # a write cut short
    damaged = tmp_path / "00000000000000002-bbbb.kf"
    damaged.write_bytes(good.read_bytes()[:-2])

    spool = Spool(tmp_path)  # restart

    assert not list(tmp_path.glob(".tmp-*"))
    assert spool.read(damaged) is None and (tmp_path / "corrupt" / damaged.name).exists()
    assert [p.name for p in spool.pending()] == [good.name]
    assert (
        spool.add(neonate="M", captured_at=datetime(2026, 1, 1, tzinfo=UTC), reason="change", jpeg=b"\xff\xd8jpeg")
        is None
    )


def test_a_keyframe_being_written_is_not_pending_until_renamed(tmp_path, monkeypatch):
    """The sender thread lists the spool while the capture thread writes: the temporary file (its
    name also ends in .kf) must not be sent, or the keyframe goes out twice (CI saw duplicates=1)."""
    import bedside.spool as spool_module

    spool = Spool(tmp_path)
    seen_during_write = []
    real_replace = spool_module.os.replace

    def replace_after_looking(source, target):
        seen_during_write.append([p.name for p in spool.pending()])
        real_replace(source, target)

    monkeypatch.setattr(spool_module.os, "replace", replace_after_looking)
    path = spool.add(neonate="M", captured_at=datetime(2026, 1, 1, tzinfo=UTC), reason="change", jpeg=b"\xff\xd8jpeg")

    assert seen_during_write == [[]]
    assert [p.name for p in spool.pending()] == [path.name]


def test_retry_after_and_backoff():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after_seconds("99999") == uplink.RETRY_AFTER_MAX_S
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    rng = random.Random(1)
    waits = [backoff_seconds(a, rng=rng) for a in (1, 2, 3, 10)]
    assert 0.025 <= waits[0] <= 0.05 and 0.05 <= waits[1] <= 0.1 and 0.1 <= waits[2] <= 0.2
    assert 0.1 <= waits[3] <= 0.2  # capped
    assert backoff_seconds(1, retry_after_s=5.0) == 5.0


def test_which_answers_are_retried():
    assert [Answer(status=s, body=b"").transient for s in (0, 500, 503, 408, 429, 401, 403)] == [True] * 7
    assert [Answer(status=s, body=b"").transient for s in (400, 404, 413, 415)] == [False] * 4
    assert Answer(status=200, body=b'{"duplicate": true}').duplicate
    assert not Answer(status=202, body=b'{"duplicate": false}').duplicate


def test_the_command_line_reads_the_environment_and_refuses_bad_input(monkeypatch, tmp_path, scene_video, fake_server):
    for name, value in {
        "SERVER": fake_server.url,
        "TOKEN": "camera-token",
        "NEONATE": "BED-0001",
        "SOURCE": str(scene_video),
        "SPOOL": str(tmp_path / "spool"),
        "ONCE": "1",
        "DETECTOR": "none",
        "MAX_INTERVAL": "2",
    }.items():
        monkeypatch.setenv(f"NEOPAIN_AGENT_{name}", value)
    assert main([]) == EXIT_OK
    times = sorted(datetime.fromisoformat(u["captured_at"]) for u in fake_server.uploads)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert len(times) >= 8 and max(gaps) <= 2.0 + 1e-6  # --max-interval 2 over a 16 s file

    with pytest.raises(SourceError, match="not a file, a camera index or a URL"):
        Source.parse(str(tmp_path / "missing.mp4"))
    assert main(["--source", str(tmp_path / "missing.mp4")]) == 2
    with pytest.raises(SystemExit):
        main(["--max-interval", "0"])


def test_a_failed_spool_write_is_logged_and_capture_goes_on(fake_server, scene_video, tmp_path, monkeypatch, caplog):
    from bedside import spool as spool_module

    real = spool_module._write_durably
    calls = []

    def full_disk_once(path, data):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(spool_module, "_write_durably", full_disk_once)
    agent = agent_for(fake_server.url, scene_video, tmp_path / "spool")

    assert agent.run() == EXIT_OK
    assert len(fake_server.frames) == 3 and "NOT spooled: [Errno 28] No space left on device" in caplog.text
