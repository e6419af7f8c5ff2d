"""``python -m inference`` as a user runs it: subprocesses, real files, JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from inference.__main__ import main as cli_main
from inference.bundle import sha256_file
from tests.inference.inference_helpers import REPO_ROOT


def run_cli(*args: str, data_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEOPAIN_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "inference", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=240
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, bedside_jpeg: bytes, no_face_png: bytes) -> Path:
    folder = tmp_path_factory.mktemp("cli-files")
    (folder / "bed1.jpg").write_bytes(bedside_jpeg)
    (folder / "empty-cot.png").write_bytes(no_face_png)
    (folder / "notes.jpg").write_text("shift handover notes\n")
    (folder / "half.jpg").write_bytes(bedside_jpeg[: len(bedside_jpeg) // 2])
    return folder


def test_predict_json_reports_every_file_and_never_stops(files: Path, tmp_path: Path) -> None:
    names = ["bed1.jpg", "notes.jpg", "missing.jpg", "empty-cot.png", "half.jpg"]
    result = run_cli("predict", "--json", *names, data_dir=tmp_path / "data", cwd=files)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in rows] == names
    assert [r["status"] for r in rows] == ["ok", "unreadable", "unreadable", "no_face", "unreadable"]
    ok = rows[0]
    assert ok["label"] in {"pain", "nonpain"} and 0 <= ok["p_pain"] <= 1
    assert ok["confidence"] == pytest.approx(max(ok["p_pain"], 1 - ok["p_pain"]), abs=1e-5)
    assert len(ok["box"]) == 4 and all(isinstance(v, int) for v in ok["box"])
    assert ok["model"]["name"] == "bootstrap-fer-proxy"
    assert set(ok["timings_ms"]) == {"decode", "detect", "classify"}
    assert rows[1]["reason"] == "plain text is not an accepted image format"
    assert rows[2]["reason"] == "file not found" and rows[2]["frame_sha256"] is None
    assert "truncated" in rows[4]["reason"]
    # The default model is the bootstrap bundle, built on first use under NEOPAIN_DATA_DIR.
    bundle = tmp_path / "data" / "models" / "bootstrap-fer-proxy.pt"
    assert bundle.is_file()
    assert {r["weights_sha256"] for r in rows} == {sha256_file(bundle)}
    expected_keys = {
        "file",
        "status",
        "reason",
        "box",
        "p_pain",
        "label",
        "confidence",
        "model",
        "weights_sha256",
        "frame_sha256",
        "timings_ms",
    }
    assert all(expected_keys <= set(r) for r in rows)


def test_predict_table_and_explicit_model(files: Path, tmp_path: Path, painnet_bundle: tuple[Path, str]) -> None:
    path, sha = painnet_bundle
    result = run_cli(
        "predict",
        "--model",
        str(path),
        "--expected-sha256",
        sha,
        "bed1.jpg",
        "notes.jpg",
        data_dir=tmp_path,
        cwd=files,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["FILE", "STATUS", "LABEL"]
    assert lines[1].startswith("bed1.jpg") and " ok " in lines[1]
    assert lines[2].startswith("notes.jpg") and "unreadable" in lines[2] and "plain text" in lines[2]


def test_predict_refuses_a_bad_model(
    files: Path, painnet_bundle: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Error paths run in-process (same code as the subprocess, minus the torch import cost).
    monkeypatch.chdir(files)
    code = cli_main(["predict", "--model", str(painnet_bundle[0]), "--expected-sha256", "0" * 64, "bed1.jpg"])
    captured = capsys.readouterr()
    assert code == 2
    assert "refusing to serve" in captured.err and captured.out == ""
    with pytest.raises(SystemExit) as usage:
        cli_main(["predict"])
    assert usage.value.code == 2 and "FILE" in capsys.readouterr().err


def test_info_prints_metadata_and_hash(bootstrap_bundle: tuple[Path, str], tmp_path: Path) -> None:
    path, sha = bootstrap_bundle
    result = run_cli("info", str(path), data_dir=tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sha256"] == sha
    assert report["metadata"]["name"] == "bootstrap-fer-proxy"
    assert report["metadata"]["is_bootstrap"] is True
    assert report["parameters"] > 1_000_000


def test_info_on_a_missing_bundle_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["info", str(tmp_path / "nope.pt")]) == 1
    assert "not found" in capsys.readouterr().err


def test_keyframes_command(scene_clip: Path, tmp_path: Path) -> None:
    text = run_cli("keyframes", str(scene_clip), data_dir=tmp_path, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert [line.split() for line in text.stdout.splitlines()[1:]] == [
        ["0", "0.000", "periodic"],
        ["15", "1.000", "change"],
        ["30", "2.000", "change"],
        ["45", "3.000", "change"],
    ]
    as_json = run_cli(
        "keyframes",
        "--json",
        "--period",
        "0",
        "--detector",
        "none",
        "--save-dir",
        str(tmp_path / "kf"),
        str(scene_clip),
        data_dir=tmp_path,
        cwd=tmp_path,
    )
    report = json.loads(as_json.stdout)
    assert [k["index"] for k in report["keyframes"]] == [15, 30, 45]
    assert [k["time_s"] for k in report["keyframes"]] == [1.0, 2.0, 3.0]
    assert {k["reason"] for k in report["keyframes"]} == {"change"}
    assert all(Image.open(k["path"]).size == (320, 240) for k in report["keyframes"])
    bad = tmp_path / "photo.mp4"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a clip")
    refused = run_cli("keyframes", "--json", str(bad), data_dir=tmp_path, cwd=tmp_path)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["status"] == "unreadable"
    assert "not an MP4" in json.loads(refused.stdout)["reason"]
