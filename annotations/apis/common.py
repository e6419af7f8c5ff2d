"""Shared by the nurse-work API views: refusal answers (409/400/403) and the person and assessment shapes."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
from rest_framework.response import Response

from annotations import services


def conflict_response(exc: services.CaseConflict) -> Response:
    return Response({"detail": exc.message, "code": exc.code}, status=status.HTTP_409_CONFLICT)


def validation_error_response(exc: DjangoValidationError) -> Response:
    if hasattr(exc, "error_dict"):
        return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
    return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)


def forbidden_response(exc: DjangoPermissionDenied) -> Response:
    return Response({"detail": str(exc) or "You may not do this."}, status=status.HTTP_403_FORBIDDEN)


#: What a nurse-work service raises when it refuses: answered by :func:`refusal_response`.
SERVICE_REFUSALS = (services.CaseConflict, DjangoValidationError, DjangoPermissionDenied)


def refusal_response(exc: Exception) -> Response:
    """409 for a conflict (with its ``code``), 400 for invalid input, 403 for a refused role."""
    if isinstance(exc, services.CaseConflict):
        return conflict_response(exc)
    if isinstance(exc, DjangoValidationError):
        return validation_error_response(exc)
    return forbidden_response(exc)


class PersonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.SerializerMethodField()

    def get_name(self, user) -> str:
        return user.get_full_name() or user.get_username()


class AssessmentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    case = serializers.IntegerField(source="case_id")
    nurse = PersonSerializer()
    face = serializers.IntegerField(allow_null=True)
    cry = serializers.IntegerField(allow_null=True)
    breathing = serializers.IntegerField(allow_null=True)
    arms = serializers.IntegerField(allow_null=True)
    legs = serializers.IntegerField(allow_null=True)
    arousal = serializers.IntegerField(allow_null=True)
    intubated = serializers.BooleanField()
    unable_to_assess = serializers.BooleanField()
    unable_reason = serializers.CharField()
    note = serializers.CharField()
    total = serializers.IntegerField(allow_null=True)
    rule = serializers.CharField()
    pain = serializers.BooleanField(allow_null=True)
    is_second_opinion = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    method = serializers.CharField(help_text="cot, video, image or unrecorded: how the baby was observed.")
    observed_at = serializers.DateTimeField(allow_null=True)
    kind = serializers.CharField(help_text="nips (all six items observed), face_only or partial.")
    face_only = serializers.BooleanField(source="is_face_only")
    nurse_call = serializers.BooleanField(allow_null=True, help_text="The nurse's own pain / no pain call.")
    bedside_source = serializers.IntegerField(
        source="bedside_source_id", allow_null=True, help_text="The bedside assessment this one was copied from."
    )
