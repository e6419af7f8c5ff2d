"""Celery application: JSON messages, an `inference` queue, late acks (see settings)."""

import logging
import os
import sys
import tempfile

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neopain_site.settings")
# A prefork worker scores frames in child processes: its metrics (NEOPAIN_WORKER_METRICS_PORT) are
# kept in prometheus_client's multiprocess files, whose folder must be set before anything imports
# prometheus_client (Django's settings do, through django-prometheus), i.e. here.
if os.environ.get("NEOPAIN_WORKER_METRICS_PORT", "0").strip() not in ("", "0") and "worker" in sys.argv[1:]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # The operator's folder: a restart starts from zero (stale files of dead processes add up forever).
        for _stale in os.scandir(os.environ["PROMETHEUS_MULTIPROC_DIR"]):
            if _stale.name.endswith(".db"):
                os.unlink(_stale.path)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="neopain-worker-metrics-")
# OpenMP threads spinning after each op starve onnxruntime's detector on a 2-core box (measured
# 10-35x slower classify); it must be set before torch loads, i.e. here, before tasks import it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

logger = logging.getLogger(__name__)

app = Celery("neopain_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

#: kombu's SQLAlchemy transport (the embedded broker) polls its table once a second by default,
#: which alone put the embedded default's upload-to-verdict p95 near 1.8 s at 10 frames/s
#: (scripts/bench_latency.py). 0.1 s costs the worker ~20 one-row SELECTs a second.
EMBEDDED_BROKER_POLLING_SECONDS = 0.1


@worker_init.connect
def _embedded_broker_polls_often(sender=None, **kwargs) -> None:
    """Shorten the SQLAlchemy broker's polling interval in the consuming (main) worker process.

    Set on the transport class because kombu hands every SQLAlchemy transport option to
    ``create_engine()``, so ``polling_interval`` cannot go through ``broker_transport_options``.
    """
    broker_url = str(getattr(getattr(sender, "app", app).conf, "broker_url", "") or "")
    if broker_url.startswith("sqla+"):
        from kombu.transport import sqlalchemy

        sqlalchemy.Transport.polling_interval = EMBEDDED_BROKER_POLLING_SECONDS


@worker_process_init.connect
def _warm_inference_pipelines(**kwargs) -> None:
    """Load the active models in each new worker process, before it takes a task.

    Synchronously (CELERY_WORKER_PROC_ALIVE_TIMEOUT allows for it): a soft time limit is an
    exception raised by a signal, and one landing inside a first, lazy ``import torch`` (or a
    model load in a background thread racing the task) leaves torch half-registered, after which
    every batch in that process fails with "duplicate registrations".
    """
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    from django.db import connection

    import inference.pipeline  # noqa: F401

    try:
        from triage.services import pipelines_warm

        pipelines_warm()
    except Exception as exc:  # a missing model or database must not kill the worker
        logger.warning("model preload skipped: %s: %s", type(exc).__name__, exc)
    finally:
        connection.close()


@worker_init.connect
def _serve_worker_metrics(sender=None, **kwargs) -> None:
    """The worker's own /metrics (inference time, batch size, outcomes) when NEOPAIN_WORKER_METRICS_PORT is set."""
    from django.conf import settings

    port = settings.NEOPAIN_WORKER_METRICS_PORT
    if not port:
        return
    from triage.metrics import worker_metrics_serve

    try:
        worker_metrics_serve(
            address=settings.NEOPAIN_WORKER_METRICS_ADDRESS,
            port=port,
            token=settings.NEOPAIN_METRICS_TOKEN,
            allowed_ips=settings.NEOPAIN_METRICS_ALLOWED_IPS,
        )
    except OSError as exc:  # port taken: the worker still scores frames
        logger.error("worker metrics not served on port %s: %s", port, exc)
