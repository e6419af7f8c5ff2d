"""Error answers of the REST API: every error body is JSON with a ``detail``."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from triage import services


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            if message:
                return message if field in ("non_field_errors", "__all__", "detail") else f"{field}: {message}"
    elif isinstance(errors, (list, tuple)):
        for value in errors:
            message = _first_message(value)
            if message:
                return message
    elif errors:
        return str(errors)
    return ""


def exception_handler(exc, context):
    """DRF's handler plus Django's own exceptions; every error body is JSON with a ``detail``.

    Field errors stay at the top level (DRF style) next to a one-line ``detail`` summary.
    """
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=as_serializer_error(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(detail=str(exc) or None)
    elif isinstance(exc, services.UploadTooLarge):
        return Response({"detail": str(exc), "limit_bytes": exc.limit}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, RequestDataTooBig):
        return Response({"detail": "Request body too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError("Malformed request.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, list):
        response.data = {"detail": _first_message(data) or "Invalid request.", "errors": data}
    elif isinstance(data, dict) and "detail" not in data:
        response.data = {"detail": _first_message(data) or "Invalid request.", **data}
    return response


def not_found(request, exception=None):
    """``handler404``: a path no route matches is JSON under /api/ (every API error is), the HTML page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return page_not_found(request, exception)


def server_error(request):
    """``handler500``: a generic JSON body under /api/ (never a stack trace), the HTML page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import server_error as page_server_error

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return page_server_error(request)
