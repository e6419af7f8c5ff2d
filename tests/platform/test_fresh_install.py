"""A fresh data folder after `manage.py migrate` alone is ready to serve sign-ins."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_migrate_alone_creates_the_cache_table_that_sign_in_needs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(NEOPAIN_DATA_DIR=str(tmp_path), NEOPAIN_ENV="development", DJANGO_SETTINGS_MODULE="neopain_site.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True, timeout=300)

    with sqlite3.connect(tmp_path / "neopain.sqlite3") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "neopain_cache" in tables
    assert "triage_auditevent" in tables
