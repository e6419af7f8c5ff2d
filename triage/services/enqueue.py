"""Publishing work to the Celery broker, by task name, after the writing transaction commits.

The one place that enqueues. It never imports the tasks modules (they import the services), so the
arrows run one way: ``triage.tasks`` -> ``triage.services``. The task is looked up by name in the Celery
app's registry; in a process that has not registered it yet (the web server), Celery's own
autodiscovery registers the installed apps' tasks first. Publishing through the task's
``apply_async`` keeps its routing (``CELERY_TASK_ROUTES``) and ``CELERY_TASK_ALWAYS_EAGER`` as before.
"""

from __future__ import annotations

import logging

from celery import current_app

logger = logging.getLogger(__name__)

FRAME_PROCESS = "triage.tasks.frame_process"
CLIP_PROCESS = "triage.tasks.clip_process"

# Publishing must fail fast when the broker is down: the upload has been stored already.
BROKER_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def task_publish(*, task_name: str, args: list) -> None:
    """Publish one message for ``task_name``; the broker's connection errors propagate."""
    task = current_app.tasks.get(task_name)
    if task is None:
        current_app.loader.import_default_modules()  # runs app.autodiscover_tasks(): registers every tasks.py
        task = current_app.tasks[task_name]
    task.apply_async(args=args, retry=True, retry_policy=BROKER_PUBLISH_RETRY)


def _ids_publish(*, task_name: str, ids: list[int], kind: str) -> int:
    """Publish ``task_name`` for each id; a broker outage is logged, not raised. Returns how many were published.

    The rows stay ``queued`` in the database, so ``frames_sweep`` publishes them again later.
    """
    published = 0
    for pk in ids:
        try:
            task_publish(task_name=task_name, args=[pk])
            published += 1
        except Exception as exc:  # kombu/redis/sqlalchemy each raise their own connection errors
            logger.warning(
                "broker unavailable, %s %s stays queued for the sweeper: %s: %s", kind, pk, type(exc).__name__, exc
            )
            break
    return published


def frames_enqueue(*, frame_ids: list[int]) -> int:
    """Publish ``frame_process`` for each frame id (see :func:`_ids_publish`)."""
    return _ids_publish(task_name=FRAME_PROCESS, ids=frame_ids, kind="frame")


def clips_enqueue(*, clip_ids: list[int]) -> int:
    """Publish ``clip_process`` for each clip id (see :func:`_ids_publish`)."""
    return _ids_publish(task_name=CLIP_PROCESS, ids=clip_ids, kind="clip")
