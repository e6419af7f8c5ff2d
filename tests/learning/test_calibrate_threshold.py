"""`manage.py calibrate_threshold`: the app's guarantee code on a unit's own CSV of scores."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from inference.thresholds import risk_control as cb


def _write_scores(path: Path, *, babies: int, seed: int = 0) -> tuple[list[str], list[float], list[int]]:
    rng = np.random.default_rng(seed)
    subjects, p_pain, labels = [], [], []
    for baby in range(babies):
        offset = rng.normal(0, 0.5)
        for _ in range(int(rng.integers(5, 25))):
            y = int(rng.random() < 0.3)
            logit = 2.5 * (2 * y - 1) + offset + rng.normal(0, 1.5)
            subjects.append(f"nb-{baby:03d}")
            p_pain.append(round(float(1 / (1 + np.exp(-logit))), 6))
            labels.append(y)
    rows = ["subject,p_pain,label"] + [f"{s},{p},{y}" for s, p, y in zip(subjects, p_pain, labels)]
    path.write_text("\n".join(rows) + "\n")
    return subjects, p_pain, labels


def _run(*args: str) -> str:
    out = StringIO()
    call_command("calibrate_threshold", *args, stdout=out)
    return out.getvalue()


def test_it_prints_the_same_thresholds_the_app_computes(tmp_path: Path) -> None:
    csv_path = tmp_path / "scores.csv"
    subjects, p_pain, labels = _write_scores(csv_path, babies=80)
    report = json.loads(_run("--scores", str(csv_path), "--alpha", "0.1", "--loss", "auto", "--json").splitlines()[-1])
    expected = cb.calibrate(p_pain=p_pain, labels=labels, subjects=subjects, alpha=0.1, loss="auto")
    assert report["crc"]["threshold"] == expected["crc"]["threshold"]
    assert report["ltt"]["threshold"] == expected["ltt"]["threshold"]
    assert report["n_subjects"] == 80 and report["n_frames"] == len(labels)
    assert not report["crc"]["all_to_nurse"] and 0 <= report["crc"]["manual_share"] < 1
    text = _run("--scores", str(csv_path), "--alpha", "0.1")
    assert "80 babies" in text and "CRC threshold" in text and "missed pain among all frames" in text


def test_it_says_when_there_are_too_few_babies(tmp_path: Path) -> None:
    csv_path = tmp_path / "few.csv"
    _write_scores(csv_path, babies=4)
    text = _run("--scores", str(csv_path), "--alpha", "0.1")
    assert "only 4 babies" in text and "every frame to a nurse" in text


@pytest.mark.parametrize(
    "content,message",
    [
        ("subject,p_pain\nnb-1,0.3\n", "missing column"),
        ("subject,p_pain,label\nnb-1,high,1\n", "line 2"),
        ("subject,p_pain,label\nnb-1,1.3,1\n", "must be in"),
        ("subject,p_pain,label\n,0.3,1\n", "empty subject"),
        ("subject,p_pain,label\n", "no rows"),
    ],
)
def test_bad_score_files_give_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(content)
    with pytest.raises(CommandError, match=message):
        _run("--scores", str(csv_path), "--alpha", "0.1")
    with pytest.raises(CommandError, match="alpha must be"):
        _write_scores(csv_path, babies=12)
        _run("--scores", str(csv_path), "--alpha", "1.5")
