"""Celery application: JSON messages, an `inference` queue, late acks (see settings)."""

import logging
import os
import threading

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neopain_site.settings")

logger = logging.getLogger(__name__)

app = Celery("neopain_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_inference_pipelines(**kwargs) -> None:
    """Load the active models in each new worker process, so the first frame does not pay for it.

    In a thread: Celery kills a child that takes more than a few seconds to report ready, and a
    task that arrives meanwhile simply waits on the model cache's lock.
    """

    def warm() -> None:
        from django.db import connection

        try:
            from triage.services import pipelines_warm

            pipelines_warm()
        except Exception as exc:  # a missing model or database must not kill the worker
            logger.warning("model preload skipped: %s: %s", type(exc).__name__, exc)
        finally:
            connection.close()

    threading.Thread(target=warm, name="neopain-preload", daemon=True).start()
