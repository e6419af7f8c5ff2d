"""Enqueueing by task name (triage.services.enqueue): the services never import the tasks module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from triage.services import enqueue

ROOT = Path(__file__).resolve().parents[2]


FRESH_WEB_PROCESS = """
import sys

import django

django.setup()
from celery.app.task import Task

from triage.services import enqueue

assert "triage.tasks" not in sys.modules, "the services imported the tasks module"
sent = []
Task.apply_async = lambda self, args=None, **options: sent.append([self.name, args, options["retry_policy"]])
print(enqueue.frames_enqueue(frame_ids=[5]), sent == [["triage.tasks.frame_process", [5], enqueue.BROKER_PUBLISH_RETRY]])
"""


def test_a_process_that_never_imported_the_tasks_module_publishes_through_the_registered_task():
    """The web server: Celery's autodiscovery registers the task by name, then its own apply_async publishes."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "neopain_site.settings_test"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_WEB_PROCESS], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "True"]


def test_it_publishes_clips_to_the_clip_task_and_stops_at_the_first_broker_error(monkeypatch, caplog):
    from triage import tasks

    calls = []

    def down(args=None, **options):
        calls.append(args)
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.clip_process, "apply_async", down)

    assert enqueue.clips_enqueue(clip_ids=[7, 8]) == 0
    assert calls == [[7]]
    assert "broker unavailable, clip 7 stays queued for the sweeper" in caplog.text
