"""What every /fhir/ view shares: ``application/fhir+json`` answers, an OperationOutcome for every error,
the project's own authentication (``REST_FRAMEWORK['DEFAULT_AUTHENTICATION_CLASSES']``) and unit scope."""

from __future__ import annotations

import logging

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, renderers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from ehr import resources
from triage.permissions import IsClinician

logger = logging.getLogger("neopain.fhir")

FHIR_JSON = "application/fhir+json"
JSON_FORMATS = {"json", "application/json", FHIR_JSON, "application/json+fhir"}


class FhirJsonRenderer(renderers.JSONRenderer):
    media_type = FHIR_JSON
    format = "fhir"
    charset = "utf-8"


class FhirNegotiation(BaseContentNegotiation):
    """FHIR JSON whatever the Accept header (``_format`` other than JSON is refused by the view)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class FhirError(exceptions.APIException):
    """An error with its own HTTP status and OperationOutcome issue code."""

    def __init__(self, message: str, *, status: int = 400, code: str | None = None):
        super().__init__(detail=message)
        self.status_code = status
        self.issue_code = code


def fhir_exception_handler(exc, context):
    """The project's API error answer, re-dressed as an OperationOutcome; a crash is a 500 one, never a page."""
    response = api_settings.EXCEPTION_HANDLER(exc, context)
    if response is None:
        logger.exception("FHIR request failed", exc_info=exc)
        return Response(resources.operation_outcome(500, "Internal server error."), status=500)
    data = response.data if isinstance(response.data, dict) else {}
    message = str(data.get("detail") or "Request failed.")
    response.data = resources.operation_outcome(response.status_code, message, code=getattr(exc, "issue_code", None))
    return response


@extend_schema(exclude=True)
class FhirApi(APIView):
    """A FHIR endpoint: nurses and unit admins of a unit (superusers: every unit); others 403, anonymous 401.

    Left out of /api/schema/: FHIR describes itself (``GET /fhir/metadata``, the CapabilityStatement)."""

    renderer_classes = [FhirJsonRenderer]
    content_negotiation_class = FhirNegotiation
    permission_classes = [IsClinician]

    def get_exception_handler(self):
        return fhir_exception_handler

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        fmt = request.query_params.get("_format")
        if fmt and fmt.split(";")[0].strip() not in JSON_FORMATS:
            raise FhirError("Only JSON is served (_format=json).", status=406, code="not-supported")

    def unit_id(self, request) -> int | None:
        """The unit whose data the caller sees; None for a superuser (every unit)."""
        return None if request.user.is_superuser else request.user.unit_id

    def base_url(self, request) -> str:
        return request.build_absolute_uri("/fhir").rstrip("/")


def not_found(message: str = "Resource not found.") -> FhirError:
    return FhirError(message, status=404, code="not-found")
