"""Test settings: the same module with NEOPAIN_ENV=test (fast hasher) and a throwaway data dir.

On SQLite the test database is a file in that data dir (not pytest-django's in-memory default),
so the end-to-end test's Celery worker process can open the same database.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("NEOPAIN_ENV", "test")
if "NEOPAIN_DATA_DIR" not in os.environ:
    # Child processes (the e2e worker) inherit the variable and share the folder; its creator removes it.
    os.environ["NEOPAIN_DATA_DIR"] = tempfile.mkdtemp(prefix="neopain-test-")
    atexit.register(shutil.rmtree, os.environ["NEOPAIN_DATA_DIR"], ignore_errors=True)

from neopain_site.settings import *  # noqa: F403
from neopain_site.settings import DATA_DIR, DATABASES

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(DATA_DIR / "test-neopain.sqlite3")

# WhiteNoise warns on every request when STATIC_ROOT is missing; tests never collect static files.
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)

# Upload throttles (triage/throttles.py) key on the user's id, and ids repeat across tests whose
# transactions were rolled back: a suite-wide rate would throttle unrelated tests. The throttle
# tests set their own rate with the ``settings`` fixture.
NEOPAIN_UPLOAD_RATE_DEVICE = "100000/min"
NEOPAIN_UPLOAD_RATE_USER = "100000/min"
