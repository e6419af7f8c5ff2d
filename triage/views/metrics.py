"""``GET /metrics``: Prometheus text format for operations (issue 18, item 4).

No session or API token: Prometheus sends ``Authorization: Bearer <NEOPAIN_METRICS_TOKEN>``, or
scrapes from an address in ``NEOPAIN_METRICS_ALLOWED_IPS``. A refused scrape is a 403 saying how to
get in. The process figures (django-prometheus request metrics) still come when the database is
down, with ``neopain_database_up 0``: the scrape itself does not fail.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from triage.addresses import client_ip
from triage.metrics import metrics_payload, metrics_request_allowed
from triage.metrics.exposition import CONTENT_TYPE

logger = logging.getLogger(__name__)


def _database_up(up: bool) -> bytes:
    return (
        "# HELP neopain_database_up 1 when the database answered this scrape.\n"
        f"# TYPE neopain_database_up gauge\nneopain_database_up {1.0 if up else 0.0}\n"
    ).encode()


@never_cache
@require_GET
def metrics(request):
    if not metrics_request_allowed(
        authorization=request.headers.get("Authorization", ""),
        ip=client_ip(request),
        token=settings.NEOPAIN_METRICS_TOKEN,
        allowed_ips=settings.NEOPAIN_METRICS_ALLOWED_IPS,
    ):
        return HttpResponse(
            "Forbidden: send Authorization: Bearer <NEOPAIN_METRICS_TOKEN>, or scrape from an address in "
            "NEOPAIN_METRICS_ALLOWED_IPS.\n",
            status=403,
            content_type="text/plain",
        )
    try:
        body = metrics_payload(with_database=True) + _database_up(True)
    except DatabaseError as exc:
        logger.warning("metrics: database unreachable (%s)", type(exc).__name__)
        body = metrics_payload(with_database=False) + _database_up(False)
    return HttpResponse(body, content_type=CONTENT_TYPE)
