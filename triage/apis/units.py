"""Units and their triage settings."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from triage import selectors, services
from triage.apis.common import UnitScopedListApi
from triage.models import Unit
from triage.permissions import IsClinicianOrMLEngineer, IsUnitAdmin


class UnitSettingsOutputSerializer(serializers.Serializer):
    threshold = serializers.FloatField()
    nips_pain_threshold = serializers.IntegerField()
    nips_rule = serializers.CharField()
    alert_cooldown_minutes = serializers.IntegerField()
    alert_escalation_minutes = serializers.IntegerField()
    claim_timeout_minutes = serializers.IntegerField()
    double_scoring_share = serializers.FloatField()
    missed_pain_target = serializers.FloatField(allow_null=True)
    device_offline_minutes = serializers.IntegerField()
    alert_rule_k = serializers.IntegerField()
    alert_rule_n = serializers.IntegerField()
    alert_rule_window_seconds = serializers.IntegerField()
    audit_share = serializers.FloatField()
    keyframe_period_s = serializers.FloatField()
    stale_after_minutes = serializers.IntegerField()
    bedside_window_minutes = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class UnitOutputSerializer(serializers.ModelSerializer):
    settings = serializers.SerializerMethodField()

    class Meta:
        model = Unit
        fields = ["id", "name", "code", "settings"]

    @extend_schema_field(UnitSettingsOutputSerializer)
    def get_settings(self, unit) -> dict:
        return UnitSettingsOutputSerializer(services.unit_settings_get(unit=unit)).data


class UnitListApi(UnitScopedListApi):
    """Your unit with its triage settings (ML engineers: every unit)."""

    permission_classes = [IsClinicianOrMLEngineer]
    output_serializer = UnitOutputSerializer

    def get_queryset(self, request):
        return selectors.units_visible(user=request.user)


class UnitDetailApi(APIView):
    """Read a unit's settings; PATCH changes them (that unit's admin only; audited)."""

    class InputSerializer(serializers.Serializer):
        threshold = serializers.FloatField(required=False, min_value=0.5, max_value=1.0)
        nips_pain_threshold = serializers.IntegerField(required=False, min_value=1, max_value=7)
        alert_cooldown_minutes = serializers.IntegerField(required=False, min_value=0, max_value=24 * 60)
        alert_escalation_minutes = serializers.IntegerField(required=False, min_value=1, max_value=240)
        claim_timeout_minutes = serializers.IntegerField(required=False, min_value=1, max_value=240)
        double_scoring_share = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
        missed_pain_target = serializers.FloatField(required=False, allow_null=True, min_value=0.001, max_value=0.5)
        device_offline_minutes = serializers.IntegerField(required=False, min_value=1, max_value=24 * 60)
        alert_rule_k = serializers.IntegerField(required=False, min_value=1, max_value=20)
        alert_rule_n = serializers.IntegerField(required=False, min_value=1, max_value=20)
        alert_rule_window_seconds = serializers.IntegerField(required=False, min_value=10, max_value=3600)
        audit_share = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
        keyframe_period_s = serializers.FloatField(required=False, min_value=0.0, max_value=600.0)
        stale_after_minutes = serializers.IntegerField(required=False, min_value=1, max_value=24 * 60)
        bedside_window_minutes = serializers.IntegerField(required=False, min_value=1, max_value=120)

        def validate(self, attrs):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Not an editable unit setting."] for name in unknown})
            if not attrs:
                raise serializers.ValidationError("Give at least one setting to change.")
            return attrs

    def get_permissions(self):
        if self.request.method == "PATCH":
            return [IsUnitAdmin()]
        return [IsClinicianOrMLEngineer()]

    def get_object(self, pk: int) -> Unit:
        return get_object_or_404(selectors.units_visible(user=self.request.user), pk=pk)

    @extend_schema(responses=UnitOutputSerializer)
    def get(self, request, pk: int):
        return Response(UnitOutputSerializer(self.get_object(pk)).data)

    @extend_schema(request=InputSerializer, responses=UnitOutputSerializer)
    def patch(self, request, pk: int):
        unit = self.get_object(pk)
        payload = request.data.get("settings", request.data) if hasattr(request.data, "get") else request.data
        if hasattr(payload, "dict"):
            payload = payload.dict()
        serializer = self.InputSerializer(data=payload)
        serializer.is_valid(raise_exception=True)
        services.unit_settings_update(unit=unit, actor=request.user, changes=serializer.validated_data, request=request)
        unit.refresh_from_db()
        return Response(UnitOutputSerializer(unit).data)
