"""The Celery worker's own metrics endpoint: ``NEOPAIN_WORKER_METRICS_PORT`` (same token / allow-list
as the web's ``/metrics``), started in the worker's main process.

The worker scores frames in prefork child processes, so the figures are kept in multiprocess mode:
``neopain_site.celery`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before anything imports
prometheus_client (unless the operator named one), and this endpoint adds the children's files up.
It exports the worker's instruments (inference time, batch size, outcomes); the database figures
are the web's, so two scrapes never count the same thing twice.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer

from triage.metrics.access import metrics_request_allowed
from triage.metrics.exposition import CONTENT_TYPE, metrics_payload

logger = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        """Scrapes every 15 s would flood the worker log."""


def metrics_wsgi_app(*, token: str, allowed_ips: list[str]):
    def app(environ, start_response):
        allowed = metrics_request_allowed(
            authorization=environ.get("HTTP_AUTHORIZATION", ""),
            ip=environ.get("REMOTE_ADDR"),
            token=token,
            allowed_ips=allowed_ips,
        )
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not found: the worker's metrics are at /metrics\n"]
        if not allowed:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [
                b"Forbidden: send Authorization: Bearer <NEOPAIN_METRICS_TOKEN> or scrape from an allowed address\n"
            ]
        body = metrics_payload(with_database=False)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]

    return app


def worker_metrics_serve(*, address: str, port: int, token: str, allowed_ips: list[str]):
    """Serve the worker's metrics in a daemon thread; returns the server (``server_port`` is the bound port)."""
    server = make_server(
        address,
        port,
        metrics_wsgi_app(token=token, allowed_ips=allowed_ips),
        server_class=ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="neopain-worker-metrics", daemon=True)
    thread.start()
    logger.info("worker metrics on http://%s:%d/metrics", address, server.server_port)
    return server
