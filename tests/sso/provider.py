"""Start the test OpenID Provider (tests/sso/provider/server.mjs, panva/oidc-provider) for a test.

Its npm packages are installed with ``npm ci`` from the committed package-lock.json the first time
(node_modules is not in git). Without Node.js the tests that need it are skipped, saying so; an
``npm ci`` that fails is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PROVIDER_DIR = Path(__file__).resolve().parent / "provider"
USERS = json.loads((PROVIDER_DIR / "users.json").read_text())


@dataclass(frozen=True)
class TestProvider:
    issuer: str
    client_id: str
    client_secret: str


def provider_packages_ready() -> None:
    """``npm ci`` once, when node_modules is missing or older than the lock file."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed: the single sign-on tests start a real OpenID Provider on node")
    marker = PROVIDER_DIR / "node_modules" / ".package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= (PROVIDER_DIR / "package-lock.json").stat().st_mtime:
        return
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PROVIDER_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci in {PROVIDER_DIR} failed:\n{result.stdout}\n{result.stderr}")


@contextmanager
def running_provider(*, redirect_uri: str, post_logout_redirect_uri: str, client_id="neopain", client_secret=None):
    """The provider on a free port of 127.0.0.1, with one client allowed to return to ``redirect_uri``."""
    provider_packages_ready()
    client_secret = client_secret or os.urandom(16).hex()
    env = {
        **os.environ,
        "OP_PORT": "0",
        "OP_CLIENT_ID": client_id,
        "OP_CLIENT_SECRET": client_secret,
        "OP_REDIRECT_URIS": redirect_uri,
        "OP_POST_LOGOUT_REDIRECT_URIS": post_logout_redirect_uri,
        "NODE_NO_WARNINGS": "1",
    }
    process = subprocess.Popen(
        ["node", "server.mjs"], cwd=PROVIDER_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=30)
    try:
        if not first_line or not first_line[0].strip():
            process.kill()
            raise RuntimeError(f"the test OpenID Provider did not start: {process.stderr.read()[-2000:]}")
        yield TestProvider(issuer=json.loads(first_line[0])["issuer"], client_id=client_id, client_secret=client_secret)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
