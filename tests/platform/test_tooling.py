"""Makefile, .ci/run and the run scripts: the commands the README promises exist and fail loudly."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_the_makefile_has_the_promised_targets():
    assert {"run", "test", "lint", "bench", "worker"} <= make_targets()


@pytest.mark.parametrize("script", [".ci/run", "scripts/run.sh", "scripts/worker.sh", "scripts/ensure_venv.sh"])
def test_the_shell_scripts_parse_and_stop_on_errors(script):
    path = ROOT / script
    text = path.read_text()

    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert "set -euo pipefail" in text


def test_ci_treats_no_tests_collected_as_a_failure():
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()

    assert "-eq 5" in ci and "make test" in ci
    assert "DATABASE_URL=" in ci and "REDIS_URL=" in ci
    assert "$$rc -eq 5" in makefile


def test_make_test_runs_on_the_embedded_default_whatever_the_shell_has():
    recipe = (ROOT / "Makefile").read_text().split("\ntest:")[1].split("\n\n")[0]

    assert "-u DATABASE_URL" in recipe and "-u REDIS_URL" in recipe


def test_make_run_honours_port_and_the_data_dir():
    run = (ROOT / "scripts" / "run.sh").read_text()

    assert 'PORT="${PORT:-8000}"' in run
    assert "NEOPAIN_DATA_DIR" in run and "127.0.0.1:$PORT" in run
    assert "celery -A neopain_site worker" in run and "neopain_setup" in run and "migrate" in run


def test_the_licence_is_the_agpl():
    assert "GNU AFFERO GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()
    assert "AGPL-3.0-or-later" in (ROOT / "README.md").read_text()
