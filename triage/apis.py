"""REST API v1 for the triage domain."""

from __future__ import annotations

from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """DRF's handler; every error body is JSON with a ``detail``."""
    return drf_exception_handler(exc, context)
