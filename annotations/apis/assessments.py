"""NIPS assessments and alert acknowledgement."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import selectors, services
from annotations.apis.common import (
    SERVICE_REFUSALS,
    AssessmentOutputSerializer,
    refusal_response,
)
from annotations.models import NIPS_ITEMS
from annotations.observations import BEDSIDE_ITEMS, Method
from triage.models import TriageCase
from triage.permissions import IsClinician, IsNurse


class AssessmentCreateApi(APIView):
    """Score the case with NIPS. The nurse must hold the claim or the case must be unclaimed."""

    permission_classes = [IsNurse]

    class InputSerializer(serializers.Serializer):
        face = serializers.IntegerField(min_value=0, max_value=NIPS_ITEMS["face"], required=False, allow_null=True)
        cry = serializers.IntegerField(min_value=0, max_value=NIPS_ITEMS["cry"], required=False, allow_null=True)
        breathing = serializers.IntegerField(
            min_value=0, max_value=NIPS_ITEMS["breathing"], required=False, allow_null=True
        )
        arms = serializers.IntegerField(min_value=0, max_value=NIPS_ITEMS["arms"], required=False, allow_null=True)
        legs = serializers.IntegerField(min_value=0, max_value=NIPS_ITEMS["legs"], required=False, allow_null=True)
        arousal = serializers.IntegerField(
            min_value=0, max_value=NIPS_ITEMS["arousal"], required=False, allow_null=True
        )
        note = serializers.CharField(required=False, allow_blank=True, max_length=services.NOTE_MAX, default="")
        intubated = serializers.BooleanField(required=False, default=False)
        unable_to_assess = serializers.BooleanField(required=False, default=False)
        unable_reason = serializers.CharField(
            required=False, allow_blank=True, max_length=services.UNABLE_REASON_MAX, default=""
        )
        method = serializers.ChoiceField(
            choices=[m.value for m in Method],
            required=False,
            default=Method.UNRECORDED.value,
            help_text="How the baby was observed: cot, video, image (face only), or unrecorded (the default).",
        )
        observed_at = serializers.DateTimeField(
            required=False,
            allow_null=True,
            default=None,
            help_text="Default: now (cot, video), the frame's time (image).",
        )
        nurse_call = serializers.BooleanField(
            required=False,
            allow_null=True,
            default=None,
            help_text="Your own pain / no pain call: required for a face-only or partial review (no NIPS total).",
        )

        resolve_related = serializers.BooleanField(
            required=False,
            allow_null=True,
            default=None,
            help_text="With method cot: also resolve the baby's other open cases from the unit's bedside window "
            "(default true).",
        )

        def validate(self, attrs):
            errors = {}
            if attrs.get("unable_to_assess"):
                if not attrs.get("unable_reason", "").strip():
                    errors["unable_reason"] = ["Say why the baby could not be assessed."]
            else:
                # Absent is an error, null is "not observed": not observing has to be said.
                image_only = attrs.get("method") == Method.IMAGE
                for name in NIPS_ITEMS:
                    if name not in attrs and not (image_only and name in BEDSIDE_ITEMS):
                        errors[name] = ["This field is required (null: not observed)."]
            if errors:
                raise serializers.ValidationError(errors)
            return attrs

    class OutputSerializer(AssessmentOutputSerializer):
        case_status = serializers.CharField(source="case.status")
        case_decided = serializers.SerializerMethodField()
        final_pain = serializers.SerializerMethodField()
        alert_id = serializers.SerializerMethodField()

        def get_case_decided(self, assessment) -> bool:
            return assessment.case.status == TriageCase.Status.DECIDED

        def get_final_pain(self, assessment) -> bool | None:
            return assessment.case.final_pain

        def get_alert_id(self, assessment) -> int | None:
            alert = assessment.alerts.order_by("-id").first()
            if alert is None and assessment.pain:
                alert = assessment.case.neonate.alerts.order_by("-last_event_at").first()
            return alert.pk if alert else None

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT}
    )
    def post(self, request, pk: int):
        case = selectors.case_get(user=request.user, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            assessment = services.assessment_create(
                case=case,
                nurse=request.user,
                items={name: data.get(name, "") for name in NIPS_ITEMS},
                note=data.get("note", ""),
                unable_reason=data.get("unable_reason", ""),
                unable_to_assess=data.get("unable_to_assess", False),
                intubated=data.get("intubated", False),
                method=data["method"],
                observed_at=data["observed_at"],
                nurse_call=data["nurse_call"],
                resolve_related=data["resolve_related"],
                request=request,
            )
        except SERVICE_REFUSALS as exc:
            return refusal_response(exc)
        return Response(self.OutputSerializer(assessment).data, status=status.HTTP_201_CREATED)


class AlertAcknowledgeApi(APIView):
    """The pain-management team has seen the alert; the note says what was done. 409 if already acknowledged."""

    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(required=False, allow_blank=True, max_length=services.NOTE_MAX, default="")

    @extend_schema(
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "AlertAcknowledged",
                {
                    "id": serializers.IntegerField(),
                    "acknowledged_at": serializers.DateTimeField(),
                    "acknowledged_by": serializers.CharField(),
                    "ack_note": serializers.CharField(),
                    "suppressed_count": serializers.IntegerField(),
                },
            ),
            409: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request, pk: int):
        alert = selectors.alert_get(user=request.user, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            alert = services.alert_acknowledge(
                alert=alert, actor=request.user, note=serializer.validated_data["note"], request=request
            )
        except SERVICE_REFUSALS as exc:
            return refusal_response(exc)
        return Response(
            {
                "id": alert.pk,
                "acknowledged_at": alert.acknowledged_at,
                "acknowledged_by": alert.acknowledged_by.get_username(),
                "ack_note": alert.ack_note,
                "suppressed_count": alert.suppressed_count,
            }
        )
