"""Neonates: list your unit's, register one."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from triage import selectors, services
from triage.apis.common import UnitScopedListApi
from triage.models import Neonate, Unit
from triage.permissions import IsClinician


class NeonateOutputSerializer(serializers.ModelSerializer):
    unit = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Neonate
        fields = ["id", "mrn", "bed", "gestational_age_weeks", "unit", "active", "created_at"]


class NeonateListCreateApi(UnitScopedListApi):
    """List the neonates of your unit; register one (nurse or unit admin)."""

    permission_classes = [IsClinician]
    output_serializer = NeonateOutputSerializer
    list_parameters = (OpenApiParameter("include_inactive", bool, description="Also list discharged neonates."),)

    class InputSerializer(serializers.Serializer):
        mrn = serializers.CharField(max_length=64)
        bed = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
        gestational_age_weeks = serializers.DecimalField(
            max_digits=4, decimal_places=1, min_value=20, max_value=45, required=False, allow_null=True
        )
        unit = serializers.SlugField(required=False, help_text="Unit code; superusers only (others: their own unit).")

    def get_queryset(self, request):
        include_inactive = request.query_params.get("include_inactive") in ("1", "true", "yes")
        return selectors.neonates_visible(user=request.user, include_inactive=include_inactive)

    @extend_schema(request=InputSerializer, responses={201: NeonateOutputSerializer})
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        unit_code = data.pop("unit", None)
        if request.user.is_superuser and unit_code:
            unit = Unit.objects.filter(code=unit_code).first()
            if unit is None:
                raise exceptions.ValidationError({"unit": [f"No unit with code {unit_code!r}."]})
        else:
            unit = request.user.unit
            if unit is None:
                raise exceptions.ValidationError({"unit": ["Give the unit code."]})
        neonate = services.neonate_create(unit=unit, actor=request.user, request=request, **data)
        return Response(NeonateOutputSerializer(neonate).data, status=status.HTTP_201_CREATED)
