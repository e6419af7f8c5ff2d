"""Go to the cot (issue 13): observing a case's baby at the bedside."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import bedside, selectors
from annotations.apis.cases import CaseDetailOutputSerializer
from annotations.apis.common import SERVICE_REFUSALS, refusal_response
from triage.permissions import IsNurse
from triage.services import unit_settings_get


class CaseBedsideApi(APIView):
    """Go to the cot: claim the case (or extend the claim) and mark it observing at bedside.

    Answers the case and ``bedside``: when the observation started, when its minute is up, the
    unit's window and the baby's other open cases that an assessment with ``method: "cot"`` will
    resolve with it (unless it sends ``resolve_related: false``). 409 when another nurse holds it,
    it is decided or she already scored it.
    """

    permission_classes = [IsNurse]

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "CaseBedside",
                {
                    "case": CaseDetailOutputSerializer(),
                    "bedside": inline_serializer(
                        "Bedside",
                        {
                            "started_at": serializers.DateTimeField(),
                            "observe_until": serializers.DateTimeField(),
                            "window_minutes": serializers.IntegerField(),
                            "related_cases": serializers.ListField(child=serializers.IntegerField()),
                        },
                    ),
                },
            ),
            409: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request, pk: int):
        case = selectors.case_get(user=request.user, pk=pk)
        try:
            case = bedside.case_bedside_start(case=case, nurse=request.user, request=request)
        except SERVICE_REFUSALS as exc:
            return refusal_response(exc)
        related = bedside.bedside_related_cases(case=case, nurse=request.user)
        fresh = selectors.case_get(user=request.user, pk=pk)
        return Response(
            {
                "case": CaseDetailOutputSerializer(fresh, context={"request": request}).data,
                "bedside": {
                    "started_at": case.bedside_started_at,
                    "observe_until": case.bedside_started_at + timedelta(seconds=bedside.OBSERVATION_SECONDS),
                    "window_minutes": unit_settings_get(unit=case.unit).bedside_window_minutes,
                    "related_cases": [c.pk for c in related],
                },
            }
        )
