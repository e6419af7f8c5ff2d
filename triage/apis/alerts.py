"""Open pain alerts of your unit."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

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
    escalated_at = serializers.DateTimeField(allow_null=True)

    def get_frame(self, alert) -> int | None:
        return alert.prediction.frame_id if alert.prediction_id else None


class AlertListApi(UnitScopedListApi):
    """Open (unacknowledged) pain alerts of your unit, newest first."""

    permission_classes = [IsClinician]
    output_serializer = AlertOutputSerializer

    def get_queryset(self, request):
        return selectors.alerts_open(user=request.user)


class AlertBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    bed = serializers.CharField()
    source = serializers.CharField()
    nips_total = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    escalated_at = serializers.DateTimeField(allow_null=True)


class AlertSummaryOutputSerializer(serializers.Serializer):
    open = serializers.IntegerField()
    escalated = serializers.IntegerField()
    escalated_to_me = serializers.BooleanField()
    newest = AlertBriefSerializer(allow_null=True)
    newest_escalated = AlertBriefSerializer(allow_null=True)
    poll_seconds = serializers.IntegerField()


class AlertSummaryApi(APIView):
    """Open and escalated alerts of your unit, for the badge on every page and the opt-in sound and
    notification (polled every ``poll_seconds``; add ``?poll=1`` so it does not count as activity).

    ``newest`` / ``newest_escalated``: the latest such alert, by bed only (no MRN: a notification
    can show on a locked screen). ``escalated_to_me``: you receive this unit's escalations.
    """

    permission_classes = [IsClinician]

    @extend_schema(responses=AlertSummaryOutputSerializer)
    def get(self, request):
        badge = selectors.alert_badge(user=request.user)
        body = {
            "open": badge.open,
            "escalated": badge.escalated,
            "escalated_to_me": badge.for_me,
            "newest": selectors.alert_brief(user=request.user, pk=badge.newest_id),
            "newest_escalated": selectors.alert_brief(user=request.user, pk=badge.newest_escalated_id)
            if badge.for_me
            else None,
            "poll_seconds": selectors.ALERT_POLL_SECONDS,
        }
        return Response(AlertSummaryOutputSerializer(body).data)
