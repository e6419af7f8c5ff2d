"""Double-scoring disagreements (issue 13, item 8): the unit's open flags, and marking one reviewed."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import disagreements, selectors
from annotations.apis.common import SERVICE_REFUSALS, AssessmentOutputSerializer, PersonSerializer, refusal_response
from triage.permissions import IsClinician


class DisagreementOutputSerializer(serializers.Serializer):
    case = serializers.IntegerField(source="case_id")
    flagged_at = serializers.DateTimeField()
    first = AssessmentOutputSerializer()
    second = AssessmentOutputSerializer()
    reviewed_at = serializers.DateTimeField(allow_null=True)
    reviewed_by = PersonSerializer(allow_null=True)
    review_note = serializers.CharField()


class DisagreementListApi(APIView):
    """The unit's double-scored cases whose two blind scores disagree on pain, not yet reviewed; newest first."""

    permission_classes = [IsClinician]
    pagination_class = None  # at most 200 rows, a plain list (the schema must not promise a page object)

    @extend_schema(responses=DisagreementOutputSerializer(many=True))
    def get(self, request):
        rows = disagreements.disagreements_open(user=request.user)[:200]
        return Response(DisagreementOutputSerializer(rows, many=True).data)


class DisagreementReviewApi(APIView):
    """Mark the case's disagreement reviewed (a unit admin, or a nurse who scored neither side).

    404 when the case has none; 403 for one of its two scorers; 409 ``reviewed`` when already done.
    """

    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(
            required=False, allow_blank=True, max_length=disagreements.REVIEW_NOTE_MAX, default=""
        )

    @extend_schema(
        request=InputSerializer,
        responses={200: DisagreementOutputSerializer, 403: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request, pk: int):
        case = selectors.case_get(user=request.user, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            flag = disagreements.disagreement_review(
                case=case, user=request.user, note=serializer.validated_data["note"], request=request
            )
        except disagreements.DisagreementReviewed as exc:
            return Response({"detail": exc.message, "code": exc.code}, status=status.HTTP_409_CONFLICT)
        except SERVICE_REFUSALS as exc:
            return refusal_response(exc)
        return Response(DisagreementOutputSerializer(flag).data)
