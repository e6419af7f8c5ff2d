"""Prometheus metrics (issue 18, item 4): what the web's ``/metrics`` and the worker's port expose.

- :mod:`~triage.metrics.instruments`  the worker's own figures (inference time, batch size, outcomes)
- :mod:`~triage.metrics.figures`      figures read from the database and the broker at scrape time
- :mod:`~triage.metrics.access`       who may scrape: a bearer token or an address allow-list
- :mod:`~triage.metrics.exposition`   the text format, one process or many (``PROMETHEUS_MULTIPROC_DIR``)
- :mod:`~triage.metrics.worker_server` the Celery worker's own HTTP endpoint (``NEOPAIN_WORKER_METRICS_PORT``)
"""

from triage.metrics.access import metrics_request_allowed
from triage.metrics.exposition import metrics_payload
from triage.metrics.instruments import batch_observe, frames_outcome_count
from triage.metrics.worker_server import worker_metrics_serve

__all__ = [
    "batch_observe",
    "frames_outcome_count",
    "metrics_payload",
    "metrics_request_allowed",
    "worker_metrics_serve",
]
