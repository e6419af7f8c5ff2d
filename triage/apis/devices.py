"""Bedside camera health: the agent's heartbeat (``python -m bedside`` sends one a minute)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from triage import services
from triage.permissions import IsDevice


class DeviceHeartbeatApi(APIView):
    """A camera reports its agent version and spool backlog (and the neonate it watches): its last contact."""

    permission_classes = [IsDevice]

    class InputSerializer(serializers.Serializer):
        agent_version = serializers.CharField(max_length=32)
        spool_backlog = serializers.IntegerField(min_value=0, max_value=10_000_000)
        neonate = serializers.CharField(max_length=64, required=False, allow_blank=True, help_text="MRN watched.")

    class OutputSerializer(serializers.Serializer):
        device = serializers.CharField(source="name")
        neonate = serializers.CharField(source="neonate.mrn", allow_null=True, default=None)
        agent_version = serializers.CharField()
        spool_backlog = serializers.IntegerField()
        last_seen_at = serializers.DateTimeField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        device = services.device_heartbeat_record(
            device=request.user.device,
            agent_version=data["agent_version"],
            spool_backlog=data["spool_backlog"],
            neonate_mrn=data.get("neonate", ""),
            request=request,
        )
        return Response(self.OutputSerializer(device).data)
