"""Open pain alerts of your unit."""

from __future__ import annotations

from rest_framework import serializers

from triage import selectors
from triage.apis.common import UnitScopedListApi
from triage.permissions import IsClinician


class AlertOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    neonate = serializers.CharField(source="neonate.mrn")
    bed = serializers.CharField(source="neonate.bed")
    source = serializers.CharField()
    prediction = serializers.IntegerField(source="prediction_id", allow_null=True)
    frame = serializers.SerializerMethodField()
    assessment = serializers.IntegerField(source="assessment_id", allow_null=True)
    created_at = serializers.DateTimeField()
    last_event_at = serializers.DateTimeField()
    suppressed_count = serializers.IntegerField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)

    def get_frame(self, alert) -> int | None:
        return alert.prediction.frame_id if alert.prediction_id else None


class AlertListApi(UnitScopedListApi):
    """Open (unacknowledged) pain alerts of your unit, newest first."""

    permission_classes = [IsClinician]
    output_serializer = AlertOutputSerializer

    def get_queryset(self, request):
        return selectors.alerts_open(user=request.user)
