"""The case queue (numbered or keyset pages), a case, claim and release."""

from __future__ import annotations

from functools import partial

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from annotations import selectors, services
from annotations.apis.common import AssessmentOutputSerializer, PersonSerializer, conflict_response, forbidden_response
from triage.pagination import PageNumberPagination
from triage.permissions import IsClinician, IsNurse

PATH_PK = 987654321987
"""A stand-in primary key, reversed once and replaced per row (the routes take ``<int:pk>``)."""

QUEUE_VALUES = (
    *("status", "confidence", "is_audit", "created_at", "claimed_at", "claim_expires_at", "claimed_by_id"),
    *("assessments_required", "decided_at", "final_pain", "unit__code", "neonate_id", "neonate__mrn", "neonate__bed"),
    *("claimed_by__username", "claimed_by__first_name", "claimed_by__last_name", "prediction_id"),
    *("prediction__p_pain", "prediction__label", "prediction__confidence", "prediction__threshold"),
    *("prediction__routed_to", "prediction__crop", "prediction__saliency", "prediction__frame_id"),
    *("prediction__frame__captured_at", "prediction__box_x", "prediction__box_y", "prediction__box_w"),
    *("prediction__box_h", "prediction__model_version_id", "prediction__model_version__name"),
    *("prediction__model_version__version", "prediction__model_version__is_bootstrap"),
)
"""The columns of a case that :func:`queue_row` turns into :class:`CaseOutputSerializer`'s output."""

_DATETIME = serializers.DateTimeField()


def queue_row(row: dict, *, paths: dict[str, str], now) -> dict:
    """What :class:`CaseOutputSerializer` says about a case, from its ``.values(*QUEUE_VALUES)`` row.

    A queue page builds no model instances (seven a row) and runs no serializer fields: 50 rows
    in ~4 ms instead of ~9 ms (scripts/bench_queue.py). ``paths`` holds each image route reversed
    once with :data:`PATH_PK`. tests/ui/test_api.py compares every branch with the serializer.
    """
    live = bool(row["claimed_by_id"] and row["claim_expires_at"] and row["claim_expires_at"] > now)
    claimed_by = None
    if live:
        name = f"{row['claimed_by__first_name']} {row['claimed_by__last_name']}".strip()
        claimed_by = {
            "id": row["claimed_by_id"],
            "username": row["claimed_by__username"],
            "name": name or row["claimed_by__username"],
        }
    prediction_id, frame_id = row["prediction_id"], row["prediction__frame_id"]
    when = _DATETIME.to_representation
    return blind_audit(
        {
            "id": row["id"],
            "status": row["status"],
            "unit": row["unit__code"],
            "neonate": {"id": row["neonate_id"], "mrn": row["neonate__mrn"], "bed": row["neonate__bed"]},
            "prediction": {
                "id": prediction_id,
                "p_pain": row["prediction__p_pain"],
                "label": row["prediction__label"],
                "confidence": row["prediction__confidence"],
                "threshold": row["prediction__threshold"],
                "routed_to": row["prediction__routed_to"],
                "model_version": {
                    "id": row["prediction__model_version_id"],
                    "label": f"{row['prediction__model_version__name']} v{row['prediction__model_version__version']}",
                    "is_bootstrap": row["prediction__model_version__is_bootstrap"],
                },
                "frame_id": frame_id,
                "captured_at": row["prediction__frame__captured_at"].isoformat(),
                "box": [
                    row["prediction__box_x"],
                    row["prediction__box_y"],
                    row["prediction__box_w"],
                    row["prediction__box_h"],
                ],
                "crop_url": _pk_path(paths["triage:prediction_crop"], prediction_id)
                if row["prediction__crop"]
                else None,
                "saliency_url": (
                    _pk_path(paths["triage:prediction_saliency"], prediction_id)
                    if row["prediction__saliency"]
                    else None
                ),
                "frame_url": _pk_path(paths["triage:frame_image"], frame_id),
            },
            "confidence": row["confidence"],
            "threshold": row["prediction__threshold"],
            "created_at": when(row["created_at"]),
            "age_seconds": max(0, int((now - row["created_at"]).total_seconds())),
            "claimed_by": claimed_by,
            "claimed_at": when(row["claimed_at"]) if row["claimed_at"] else None,
            "claim_expires_at": when(row["claim_expires_at"]) if row["claim_expires_at"] else None,
            "claim_live": live,
            "assessments_required": row["assessments_required"],
            "assessments_done": row["assessments_done"],
            "decided_at": when(row["decided_at"]) if row["decided_at"] else None,
            "final_pain": row["final_pain"],
            "is_audit": row["is_audit"],
        }
    )


def blind_audit(case: dict) -> dict:
    """An undecided audit case without the model's verdict: the nurse scores it blind (issue 15).

    Audit labels are the unbiased ones calibration and live accuracy rest on; a nurse who sees
    "no pain, 97%" would anchor on it.
    """
    if case["is_audit"] and case["status"] != "decided":
        case["prediction"].update(p_pain=None, label=None, confidence=None, saliency_url=None)
        case["confidence"] = None
    return case


def _pk_path(template: str, pk: int) -> str:
    return template.replace(str(PATH_PK), str(pk))


def queue_rows_json(ids: list[int]) -> list[dict]:
    """The cases ``ids`` as the queue API shows them (:func:`queue_row`), in the order of ``ids``."""
    paths = {name: reverse(name, args=[PATH_PK]) for name in QUEUE_PATHS}
    now = timezone.now()
    return [queue_row(row, paths=paths, now=now) for row in selectors.queue_values(ids, values=QUEUE_VALUES)]


QUEUE_PATHS = ("triage:prediction_crop", "triage:prediction_saliency", "triage:frame_image")


class CaseOutputSerializer(serializers.Serializer):
    """A triage case. ``assessments`` lists only what the caller may see (blind double scoring)."""

    id = serializers.IntegerField()
    status = serializers.CharField()
    unit = serializers.CharField(source="unit.code")
    neonate = serializers.SerializerMethodField()
    prediction = serializers.SerializerMethodField()
    confidence = serializers.FloatField(allow_null=True)
    is_audit = serializers.BooleanField()
    threshold = serializers.FloatField(source="prediction.threshold")
    created_at = serializers.DateTimeField()
    age_seconds = serializers.SerializerMethodField()
    claimed_by = serializers.SerializerMethodField()
    claimed_at = serializers.DateTimeField(allow_null=True)
    claim_expires_at = serializers.DateTimeField(allow_null=True)
    claim_live = serializers.SerializerMethodField()
    assessments_required = serializers.IntegerField()
    assessments_done = serializers.SerializerMethodField()
    decided_at = serializers.DateTimeField(allow_null=True)
    final_pain = serializers.BooleanField(allow_null=True)

    def to_representation(self, case) -> dict:
        return blind_audit(dict(super().to_representation(case)))

    def get_neonate(self, case) -> dict:
        neonate = case.neonate
        return {"id": neonate.pk, "mrn": neonate.mrn, "bed": neonate.bed}

    def get_prediction(self, case) -> dict:
        p = case.prediction
        return {
            "id": p.pk,
            "p_pain": p.p_pain,
            "label": p.label,
            "confidence": p.confidence,
            "threshold": p.threshold,
            "routed_to": p.routed_to,
            "model_version": {
                "id": p.model_version_id,
                "label": p.model_version.label,
                "is_bootstrap": p.model_version.is_bootstrap,
            },
            "frame_id": p.frame_id,
            "captured_at": p.frame.captured_at.isoformat(),
            "box": p.box,
            "crop_url": self._path("triage:prediction_crop", p.pk) if p.crop else None,
            "saliency_url": self._path("triage:prediction_saliency", p.pk) if p.saliency else None,
            "frame_url": self._path("triage:frame_image", p.frame_id),
        }

    def _path(self, name: str, pk: int) -> str:
        """``reverse(name, args=[pk])``, reversed once per serializer (a list shares one) instead of thrice a row."""
        paths = self.__dict__.setdefault("_paths", {})
        if name not in paths:
            paths[name] = reverse(name, args=[PATH_PK])
        return paths[name].replace(str(PATH_PK), str(pk))

    def get_age_seconds(self, case) -> int:
        return max(0, int((timezone.now() - case.created_at).total_seconds()))

    def get_claimed_by(self, case) -> dict | None:
        if not case.claim_is_live():
            return None
        return PersonSerializer(case.claimed_by).data

    def get_claim_live(self, case) -> bool:
        return case.claim_is_live()

    def get_assessments_done(self, case) -> int:
        annotated = getattr(case, "assessments_done", None)
        if annotated is not None:
            return annotated
        return len(case.assessments.all())


class CaseDetailOutputSerializer(CaseOutputSerializer):
    assessments = serializers.SerializerMethodField()

    @extend_schema(responses=AssessmentOutputSerializer(many=True))
    def get_assessments(self, case) -> list:
        visible = selectors.assessments_visible(user=self.context["request"].user, case=case)
        return AssessmentOutputSerializer(visible, many=True).data


class CaseListApi(APIView):
    """The unit's queue: ``status=open`` (default; includes claimed cases), ``claimed`` or ``decided``."""

    permission_classes = [IsClinician]

    class Pagination(PageNumberPagination):
        page_size = 50
        page_size_query_param = "page_size"
        max_page_size = 200

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=["open", "claimed", "decided"], default="open"),
            OpenApiParameter(
                "after",
                int,
                description="Instead of `page`: the cases that follow this case id in the queue's order "
                "(keyset paging: `next` carries it; a deep page costs what the first does).",
            ),
        ],
        responses=CaseOutputSerializer(many=True),
    )
    def get(self, request):
        wanted = request.query_params.get("status", "open")
        if wanted not in {"open", "claimed", "decided"}:
            raise ValidationError({"status": ["Must be open, claimed or decided."]})
        cases = selectors.queue_for_nurse(user=request.user, status=wanted)
        count = selectors.queue_count(user=request.user, status=wanted)
        paginator = self.Pagination()
        if "after" in request.query_params:
            return self.get_after(request, cases, count=count, size=paginator.get_page_size(request))
        paginator.django_paginator_class = partial(selectors.QueuePaginator, count=count, rows=queue_rows_json)
        page = paginator.paginate_queryset(cases, request, view=self)
        return paginator.get_paginated_response(list(page))

    def get_after(self, request, cases, *, count: int, size: int) -> Response:
        """The page after the case ``after`` (same envelope as a numbered page; ``previous`` is null)."""
        after = request.query_params["after"]
        anchor = (
            selectors.case_for_cursor(user=request.user, pk=int(after)) if after.isascii() and after.isdigit() else None
        )
        if anchor is None:
            raise ValidationError({"after": ["Not a case of your unit."]})
        try:
            following = selectors.queue_after(cases, case=anchor)
        except ValueError as exc:
            raise ValidationError({"after": [str(exc)]}) from exc
        ids = selectors.queue_page_ids(following, offset=0, limit=size + 1)
        next_url = None
        if len(ids) > size:
            next_url = replace_query_param(
                remove_query_param(request.build_absolute_uri(), "page"), "after", ids[size - 1]
            )
        return Response({"count": count, "next": next_url, "previous": None, "results": queue_rows_json(ids[:size])})


class CaseDetailApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses=CaseDetailOutputSerializer)
    def get(self, request, pk: int):
        case = selectors.case_get(user=request.user, pk=pk)
        return Response(CaseDetailOutputSerializer(case, context={"request": request}).data)


def _case_action(request, pk: int, action) -> Response:
    """Run a claim/release service on the caller's case; conflicts -> 409, refusals -> 403."""
    case = selectors.case_get(user=request.user, pk=pk)
    try:
        action(case=case, nurse=request.user, request=request)
    except services.CaseConflict as exc:
        return conflict_response(exc)
    except DjangoPermissionDenied as exc:
        return forbidden_response(exc)
    case = selectors.case_get(user=request.user, pk=pk)
    return Response(CaseDetailOutputSerializer(case, context={"request": request}).data)


class CaseClaimApi(APIView):
    """Claim the case for the calling nurse (re-claiming extends the claim). 409 if another nurse holds it."""

    permission_classes = [IsNurse]

    @extend_schema(request=None, responses={200: CaseDetailOutputSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        return _case_action(request, pk, services.case_claim)


class CaseReleaseApi(APIView):
    """Give the case back to the queue (the holder, or a unit admin for a stuck claim).

    Optional ``claim_expires_at``: release only if the claim still ends then, else 409 ``renewed``
    (the case page sends it when the nurse leaves; a reload has renewed the claim meanwhile).
    """

    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        claim_expires_at = serializers.DateTimeField(required=False)

    @extend_schema(request=InputSerializer, responses={200: CaseDetailOutputSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if_expires_at = serializer.validated_data.get("claim_expires_at")
        return _case_action(request, pk, partial(services.case_release, if_expires_at=if_expires_at))


class CaseHeartbeatApi(APIView):
    """The case page's heartbeat while the holder edits: extends her claim (a lapsed one is re-taken if free).

    200 ``{"id", "claim_expires_at", "claim_seconds_left"}``; 409 with ``code`` ``held`` (another
    nurse took it over), ``not_held`` (released), ``decided`` or ``already_scored``.
    """

    permission_classes = [IsNurse]

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "ClaimHeartbeat",
                {
                    "id": serializers.IntegerField(),
                    "claim_expires_at": serializers.DateTimeField(),
                    "claim_seconds_left": serializers.IntegerField(),
                },
            ),
            409: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request, pk: int):
        case = selectors.case_get(user=request.user, pk=pk)
        try:
            case = services.case_claim_extend(case=case, nurse=request.user, request=request)
        except services.CaseConflict as exc:
            return conflict_response(exc)
        except DjangoPermissionDenied as exc:
            return forbidden_response(exc)
        left = (case.claim_expires_at - timezone.now()).total_seconds()
        return Response(
            {
                "id": case.pk,
                "claim_expires_at": _DATETIME.to_representation(case.claim_expires_at),
                "claim_seconds_left": max(0, int(left)),
            }
        )
