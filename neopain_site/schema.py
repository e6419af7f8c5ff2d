"""OpenAPI schema generation tweaks (drf-spectacular)."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers

from triage.pagination import PageNumberPagination


class ErrorSerializer(serializers.Serializer):
    """Every error body: a one-line ``detail``, field errors (if any) beside it."""

    detail = serializers.CharField()


# Statuses any operation can answer: bad input, not signed in, role refused, unknown object (or page).
ERROR_RESPONSES = ("400", "401", "403", "404")


class AutoSchema(SpectacularAutoSchema):
    """Names nested serializers after their view, so every ``InputSerializer`` gets its own component.

    ``FrameListCreateApi.InputSerializer`` becomes ``FrameListCreateInput`` instead of every view's
    ``Input`` colliding into one component.
    """

    def get_serializer_name(self, serializer, direction):
        cls = serializer.__class__
        parts = cls.__qualname__.split(".")
        if len(parts) >= 2 and "<locals>" not in parts:
            outer = parts[-2]
            for suffix in ("Api", "View", "ViewSet"):
                if outer.endswith(suffix):
                    outer = outer[: -len(suffix)]
                    break
            inner = parts[-1]
            if inner.endswith("Serializer"):
                inner = inner[: -len("Serializer")]
            return f"{outer}{inner}"
        return super().get_serializer_name(serializer, direction)

    def _get_paginator(self):
        """The API views paginate their lists by hand (``triage.apis.paginate``): describe that envelope.

        drf-spectacular asks only for GET list responses, and ours are paginated unless a view says
        ``pagination_class = None`` (a short list returned whole, such as ``/api/v1/disagreements/``).
        """
        own = [cls for cls in type(self.view).__mro__ if not cls.__module__.startswith("rest_framework")]
        if any("pagination_class" in vars(cls) for cls in own) and self.view.pagination_class is None:
            return None
        pagination = getattr(self.view, "pagination_class", None) or getattr(self.view, "Pagination", None)
        return (pagination or PageNumberPagination)()

    def _get_response_bodies(self, direction="response"):
        """The success responses, plus the error statuses (JSON with ``detail``) that every operation can give."""
        responses = super()._get_response_bodies(direction)
        codes = list(ERROR_RESPONSES)
        if getattr(self.view, "throttle_classes", None) and self.method == "POST":
            codes.append("429")  # over an upload rate (``Retry-After`` says when to try again)
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
        return responses
