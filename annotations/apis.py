"""REST API v1 for nurse work: the case queue, claims, NIPS assessments, alert acknowledgement, CSV export.

Roles: nurses and unit admins read their own unit's cases and alerts; only nurses claim and score.
Another unit's case or alert is a 404. ML engineers and devices get 403. Errors are JSON with a
``detail``; a case that cannot take the action now (held, decided, already scored) is a 409 with a
``code``.
"""

from __future__ import annotations

from functools import partial

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from annotations import selectors, services
from annotations.export import export_lines
from annotations.models import NIPS_ITEMS
from triage.models import TriageCase, Unit
from triage.permissions import IsClinician, IsNurse
from triage.services import audit_record


def _conflict(exc: services.CaseConflict) -> Response:
    return Response({"detail": exc.message, "code": exc.code}, status=status.HTTP_409_CONFLICT)


def _validation_error(exc: DjangoValidationError) -> Response:
    if hasattr(exc, "error_dict"):
        return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
    return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)


def _forbidden(exc: DjangoPermissionDenied) -> Response:
    return Response({"detail": str(exc) or "You may not do this."}, status=status.HTTP_403_FORBIDDEN)


class PersonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.SerializerMethodField()

    def get_name(self, user) -> str:
        return user.get_full_name() or user.get_username()


class AssessmentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    case = serializers.IntegerField(source="case_id")
    nurse = PersonSerializer()
    face = serializers.IntegerField(allow_null=True)
    cry = serializers.IntegerField(allow_null=True)
    breathing = serializers.IntegerField(allow_null=True)
    arms = serializers.IntegerField(allow_null=True)
    legs = serializers.IntegerField(allow_null=True)
    arousal = serializers.IntegerField(allow_null=True)
    intubated = serializers.BooleanField()
    unable_to_assess = serializers.BooleanField()
    unable_reason = serializers.CharField()
    note = serializers.CharField()
    total = serializers.IntegerField(allow_null=True)
    rule = serializers.CharField()
    pain = serializers.BooleanField(allow_null=True)
    is_second_opinion = serializers.BooleanField()
    created_at = serializers.DateTimeField()


PATH_PK = 987654321987
"""A stand-in primary key, reversed once and replaced per row (the routes take ``<int:pk>``)."""

QUEUE_VALUES = (
    *("status", "confidence", "created_at", "claimed_at", "claim_expires_at", "claimed_by_id"),
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
    return {
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
            "crop_url": _pk_path(paths["triage:prediction_crop"], prediction_id) if row["prediction__crop"] else None,
            "saliency_url": (
                _pk_path(paths["triage:prediction_saliency"], prediction_id) if row["prediction__saliency"] else None
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
    }


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
    confidence = serializers.FloatField()
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
        return _conflict(exc)
    except DjangoPermissionDenied as exc:
        return _forbidden(exc)
    case = selectors.case_get(user=request.user, pk=pk)
    return Response(CaseDetailOutputSerializer(case, context={"request": request}).data)


class CaseClaimApi(APIView):
    """Claim the case for the calling nurse (re-claiming extends the claim). 409 if another nurse holds it."""

    permission_classes = [IsNurse]

    @extend_schema(request=None, responses={200: CaseDetailOutputSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        return _case_action(request, pk, services.case_claim)


class CaseReleaseApi(APIView):
    """Give the case back to the queue (the holder, or a unit admin for a stuck claim)."""

    permission_classes = [IsClinician]

    @extend_schema(request=None, responses={200: CaseDetailOutputSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        return _case_action(request, pk, services.case_release)


class AssessmentCreateApi(APIView):
    """Score the case with NIPS. The nurse must hold the claim or the case must be unclaimed."""

    permission_classes = [IsNurse]

    class InputSerializer(serializers.Serializer):
        face = serializers.IntegerField(min_value=0, max_value=NIPS_ITEMS["face"], required=False, allow_null=True)
        cry = serializers.IntegerField(min_value=0, max_value=NIPS_ITEMS["cry"], required=False, allow_null=True)
        breathing = serializers.IntegerField(
            min_value=0, max_value=NIPS_ITEMS["breathing"], required=False, allow_null=True
        )
        arms = serializers.IntegerField(min_value=0, max_value=NIPS_ITEMS["arms"], required=False, allow_null=True)
        legs = serializers.IntegerField(min_value=0, max_value=NIPS_ITEMS["legs"], required=False, allow_null=True)
        arousal = serializers.IntegerField(
            min_value=0, max_value=NIPS_ITEMS["arousal"], required=False, allow_null=True
        )
        note = serializers.CharField(required=False, allow_blank=True, max_length=services.NOTE_MAX, default="")
        intubated = serializers.BooleanField(required=False, default=False)
        unable_to_assess = serializers.BooleanField(required=False, default=False)
        unable_reason = serializers.CharField(
            required=False, allow_blank=True, max_length=services.UNABLE_REASON_MAX, default=""
        )

        def validate(self, attrs):
            errors = {}
            if attrs.get("unable_to_assess"):
                if not attrs.get("unable_reason", "").strip():
                    errors["unable_reason"] = ["Say why the baby could not be assessed."]
            else:
                for name in NIPS_ITEMS:
                    if attrs.get(name) is None:
                        errors[name] = ["This field is required."]
            if errors:
                raise serializers.ValidationError(errors)
            return attrs

    class OutputSerializer(AssessmentOutputSerializer):
        case_status = serializers.CharField(source="case.status")
        case_decided = serializers.SerializerMethodField()
        final_pain = serializers.SerializerMethodField()
        alert_id = serializers.SerializerMethodField()

        def get_case_decided(self, assessment) -> bool:
            return assessment.case.status == TriageCase.Status.DECIDED

        def get_final_pain(self, assessment) -> bool | None:
            return assessment.case.final_pain

        def get_alert_id(self, assessment) -> int | None:
            alert = assessment.alerts.order_by("-id").first()
            if alert is None and assessment.pain:
                alert = assessment.case.neonate.alerts.order_by("-last_event_at").first()
            return alert.pk if alert else None

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT}
    )
    def post(self, request, pk: int):
        case = selectors.case_get(user=request.user, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            assessment = services.assessment_create(
                case=case,
                nurse=request.user,
                items={name: data.get(name) for name in NIPS_ITEMS},
                note=data.get("note", ""),
                unable_reason=data.get("unable_reason", ""),
                unable_to_assess=data.get("unable_to_assess", False),
                intubated=data.get("intubated", False),
                request=request,
            )
        except services.CaseConflict as exc:
            return _conflict(exc)
        except DjangoValidationError as exc:
            return _validation_error(exc)
        except DjangoPermissionDenied as exc:
            return _forbidden(exc)
        return Response(self.OutputSerializer(assessment).data, status=status.HTTP_201_CREATED)


class AlertAcknowledgeApi(APIView):
    """The pain-management team has seen the alert; the note says what was done. 409 if already acknowledged."""

    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(required=False, allow_blank=True, max_length=services.NOTE_MAX, default="")

    @extend_schema(
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "AlertAcknowledged",
                {
                    "id": serializers.IntegerField(),
                    "acknowledged_at": serializers.DateTimeField(),
                    "acknowledged_by": serializers.CharField(),
                    "ack_note": serializers.CharField(),
                    "suppressed_count": serializers.IntegerField(),
                },
            ),
            409: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request, pk: int):
        alert = selectors.alert_get(user=request.user, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            alert = services.alert_acknowledge(
                alert=alert, actor=request.user, note=serializer.validated_data["note"], request=request
            )
        except services.CaseConflict as exc:
            return _conflict(exc)
        except DjangoValidationError as exc:
            return _validation_error(exc)
        except DjangoPermissionDenied as exc:
            return _forbidden(exc)
        return Response(
            {
                "id": alert.pk,
                "acknowledged_at": alert.acknowledged_at,
                "acknowledged_by": alert.acknowledged_by.get_username(),
                "ack_note": alert.ack_note,
                "suppressed_count": alert.suppressed_count,
            }
        )


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
            unit = (
                Unit.objects.filter(pk=int(unit_value)).first()
                if unit_value.isdigit()
                else Unit.objects.filter(code=unit_value).first()
            )
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
