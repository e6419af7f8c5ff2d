"""The streamed CSV export of NIPS assessments."""

from __future__ import annotations

from django.core.validators import slug_re
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import selectors
from annotations.export import export_lines
from triage.models import Unit
from triage.permissions import IsClinician
from triage.services import audit_record


class CSVRenderer(BaseRenderer):
    """Lets ``Accept: text/csv`` through content negotiation; error bodies become one line of text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict):
            return "; ".join(f"{k}: {v}" for k, v in data.items()).encode()
        return data if isinstance(data, bytes) else str(data or "").encode()


class AssessmentExportApi(APIView):
    """One CSV row per assessment, streamed. Nurses and unit admins: their own unit; superusers: any.

    ML engineers are refused: the file carries MRNs and free-text notes; they train from the
    de-identified training-set export instead. Filters: ``unit`` (id or code), ``date_from`` and
    ``date_to`` (YYYY-MM-DD, inclusive, on the assessment time), ``neonate`` (MRN); ``bom=1`` adds a
    UTF-8 byte-order mark for Excel. Every export is audited with the filters and the row count.
    """

    permission_classes = [IsClinician]
    renderer_classes = [JSONRenderer, CSVRenderer]

    class FilterSerializer(serializers.Serializer):
        unit = serializers.CharField(required=False, allow_blank=True)
        date_from = serializers.DateField(required=False, allow_null=True)
        date_to = serializers.DateField(required=False, allow_null=True)
        neonate = serializers.CharField(required=False, allow_blank=True, max_length=64)
        bom = serializers.BooleanField(required=False, default=False)

        def validate(self, attrs):
            if attrs.get("date_from") and attrs.get("date_to") and attrs["date_from"] > attrs["date_to"]:
                raise serializers.ValidationError({"date_to": ["Must be on or after date_from."]})
            return attrs

    @extend_schema(
        parameters=[
            OpenApiParameter("unit", str, description="Unit id or code (defaults to your unit)"),
            OpenApiParameter("date_from", OpenApiTypes.DATE),
            OpenApiParameter("date_to", OpenApiTypes.DATE),
            OpenApiParameter("neonate", str, description="Neonate MRN"),
            OpenApiParameter("bom", bool, description="Prepend a UTF-8 byte-order mark (Excel)"),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request):
        # An empty form field ("date_from=") means "no filter", not a malformed date.
        filters = self.FilterSerializer(data={k: v for k, v in request.query_params.items() if v != ""})
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        user = request.user
        units = selectors.unit_ids_for(user)
        unit_value = (data.get("unit") or "").strip()
        unit = None
        if unit_value:
            # ``"²".isdigit()`` is true and ``int("²")`` raises: ids are ASCII digits, codes are slugs.
            if unit_value.isascii() and unit_value.isdigit():
                unit = Unit.objects.filter(pk=int(unit_value)).first()
            elif slug_re.fullmatch(unit_value):
                unit = Unit.objects.filter(code=unit_value).first()
            else:
                raise ValidationError({"unit": ["Must be a unit id (digits) or a unit code."]})
            if unit is None or (units is not None and unit.pk not in units):
                return Response(
                    {"detail": "You can export only your own unit's assessments."}, status=status.HTTP_403_FORBIDDEN
                )
            units = [unit.pk]
        as_of = timezone.now()
        queryset = selectors.assessments_for_export(
            units=units,
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            mrn=(data.get("neonate") or "").strip(),
            as_of=as_of,
        )
        row_count = queryset.count()
        audit_filters = {
            "unit": unit.code if unit else (user.unit.code if user.unit_id else "all"),
            "date_from": data["date_from"].isoformat() if data.get("date_from") else None,
            "date_to": data["date_to"].isoformat() if data.get("date_to") else None,
            "neonate": (data.get("neonate") or "").strip() or None,
        }
        # Audited before the first byte leaves: a client that disconnects mid-download still left a trace.
        audit_record(
            action="assessments.exported",
            actor=user,
            unit=unit or user.unit,
            object_type="annotations.NipsAssessment",
            after={"filters": audit_filters, "row_count": row_count, "as_of": as_of.isoformat()},
            request=request,
        )
        stamp = as_of.strftime("%Y%m%dT%H%M%SZ")
        scope = audit_filters["unit"]
        response = StreamingHttpResponse(
            (
                line.encode("utf-8")
                for line in export_lines(queryset.iterator(chunk_size=500), bom=data.get("bom", False))
            ),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="nips-assessments-{scope}-{stamp}.csv"'
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        response["X-Row-Count"] = str(row_count)
        return response
