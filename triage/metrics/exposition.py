"""The Prometheus text format for a scrape: this process's (or all processes') instruments, plus the
database figures where asked.

Under gunicorn or a prefork Celery worker every process keeps its own counters. With
``PROMETHEUS_MULTIPROC_DIR`` set (an empty folder, the same for all processes of one service, set
before they start) prometheus_client writes them to files there and a scrape adds them up.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def process_registry() -> CollectorRegistry:
    """This process's registry, or one that adds up every process's files in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_payload(*, with_database: bool, with_broker: bool = True) -> bytes:
    """One scrape's body: the process metrics, then NeoPain's database (and broker) figures."""
    body = generate_latest(process_registry())
    if with_database:
        from triage.metrics.figures import NeoPainCollector

        figures = CollectorRegistry(auto_describe=False)
        figures.register(NeoPainCollector(with_broker=with_broker))
        body += generate_latest(figures)
    return body
