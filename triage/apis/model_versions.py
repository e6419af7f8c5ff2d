"""The model registry over HTTP: list registered models, activate one."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from triage import selectors, services
from triage.apis.common import UnitScopedListApi
from triage.models import ModelVersion
from triage.permissions import IsClinicianOrMLEngineer, IsMLEngineer


class ModelVersionOutputSerializer(serializers.ModelSerializer):
    unit = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    activated_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "kind",
            "name",
            "version",
            "unit",
            "sha256",
            "backbone",
            "architecture",
            "is_bootstrap",
            "metrics",
            "status",
            "created_at",
            "activated_at",
            "activated_by",
        ]


class ModelVersionListApi(UnitScopedListApi):
    """Registered models (ML engineers: all; clinicians: global and their unit's)."""

    permission_classes = [IsClinicianOrMLEngineer]
    output_serializer = ModelVersionOutputSerializer

    def get_queryset(self, request):
        return selectors.model_versions_visible(user=request.user)


class ModelVersionActivateApi(APIView):
    """Make a registered model the active one (ML engineer; audited). Workers switch on their next batch."""

    permission_classes = [IsMLEngineer]

    @extend_schema(request=None, responses=ModelVersionOutputSerializer)
    def post(self, request, pk: int):
        model_version = get_object_or_404(selectors.model_versions_visible(user=request.user), pk=pk)
        model_version = services.model_version_activate(
            model_version=model_version, actor=request.user, request=request
        )
        return Response(ModelVersionOutputSerializer(model_version).data)
