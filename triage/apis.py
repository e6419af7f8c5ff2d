"""REST API v1 for the triage domain: neonates, units, frame/clip ingest, alerts, models, health.

One view per resource, nested Input/Output serializers, querysets scoped to the caller's unit
(another unit's object is a 404). Every error body is JSON with a ``detail``.
"""

from __future__ import annotations

import functools
import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.db import connection
from django.http import QueryDict
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from triage import selectors, services
from triage.models import Frame, ModelVersion, Neonate, Prediction, Unit
from triage.permissions import (
    IsClinician,
    IsClinicianOrDevice,
    IsClinicianOrMLEngineer,
    IsMLEngineer,
    IsUnitAdmin,
    user_is_device,
)

logger = logging.getLogger(__name__)


# --- Errors ------------------------------------------------------------------------------


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            if message:
                return message if field in ("non_field_errors", "__all__", "detail") else f"{field}: {message}"
    elif isinstance(errors, (list, tuple)):
        for value in errors:
            message = _first_message(value)
            if message:
                return message
    elif errors:
        return str(errors)
    return ""


def exception_handler(exc, context):
    """DRF's handler plus Django's own exceptions; every error body is JSON with a ``detail``.

    Field errors stay at the top level (DRF style) next to a one-line ``detail`` summary.
    """
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=as_serializer_error(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(detail=str(exc) or None)
    elif isinstance(exc, services.UploadTooLarge):
        return Response({"detail": str(exc), "limit_bytes": exc.limit}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, RequestDataTooBig):
        return Response({"detail": "Request body too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError("Malformed request.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, list):
        response.data = {"detail": _first_message(data) or "Invalid request.", "errors": data}
    elif isinstance(data, dict) and "detail" not in data:
        response.data = {"detail": _first_message(data) or "Invalid request.", **data}
    return response


def not_found(request, exception=None):
    """``handler404``: a path no route matches is JSON under /api/ (every API error is), the HTML page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return page_not_found(request, exception)


def server_error(request):
    """``handler500``: a generic JSON body under /api/ (never a stack trace), the HTML page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import server_error as page_server_error

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return page_server_error(request)


class CappedUploadHandler(FileUploadHandler):
    """First upload handler of ingest views: refuses a body or file over the cap before storing it.

    A declared Content-Length over the cap stops parsing at once (nothing is read); a chunked or
    lying client is cut off when the file part passes the cap. The view then answers 413.
    """

    # Multipart framing and the small text fields around the file.
    SLACK_BYTES = 64 * 1024

    def __init__(self, request=None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.exceeded = False
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > self.limit + self.SLACK_BYTES:
            self.exceeded = True
            return QueryDict(mutable=True), MultiValueDict()
        return None

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size):
        return None


class CappedUploadMixin:
    """Installs :class:`CappedUploadHandler` before DRF (or a CSRF check) parses the body."""

    upload_limit_setting = "NEOPAIN_MAX_UPLOAD_BYTES"

    def initialize_request(self, request, *args, **kwargs):
        self.upload_cap = CappedUploadHandler(request, limit=getattr(settings, self.upload_limit_setting))
        if request.method == "POST":
            request.upload_handlers = [self.upload_cap, *request.upload_handlers]
        return super().initialize_request(request, *args, **kwargs)

    def raise_if_upload_too_large(self, request) -> None:
        request.data  # noqa: B018 - parse now, so the cap handler has seen the body
        if self.upload_cap.exceeded:
            raise services.UploadTooLarge(self.upload_cap.limit)


def paginate(view: APIView, request, queryset, serializer_class):
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context={"request": request}).data)


def _upload_neonate(*, request, mrn: str) -> Neonate:
    neonate = selectors.neonate_for_upload(user=request.user, mrn=mrn)
    if neonate is None:
        # Same answer whether the MRN is unknown or belongs to another unit: no cross-unit leak.
        raise exceptions.ValidationError({"neonate": [f"No active neonate with MRN {mrn!r} in your unit."]})
    return neonate


def _caller_device(request):
    return request.user.device if user_is_device(request.user) else None


# --- Neonates ----------------------------------------------------------------------------


class NeonateOutputSerializer(serializers.ModelSerializer):
    unit = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Neonate
        fields = ["id", "mrn", "bed", "gestational_age_weeks", "unit", "active", "created_at"]


class NeonateListCreateApi(APIView):
    """List the neonates of your unit; register one (nurse or unit admin)."""

    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        mrn = serializers.CharField(max_length=64)
        bed = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
        gestational_age_weeks = serializers.DecimalField(
            max_digits=4, decimal_places=1, min_value=20, max_value=45, required=False, allow_null=True
        )
        unit = serializers.SlugField(required=False, help_text="Unit code; superusers only (others: their own unit).")

    @extend_schema(
        parameters=[OpenApiParameter("include_inactive", bool, description="Also list discharged neonates.")],
        responses=NeonateOutputSerializer(many=True),
    )
    def get(self, request):
        include_inactive = request.query_params.get("include_inactive") in ("1", "true", "yes")
        queryset = selectors.neonates_visible(user=request.user, include_inactive=include_inactive)
        return paginate(self, request, queryset, NeonateOutputSerializer)

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


# --- Units -------------------------------------------------------------------------------


class UnitSettingsOutputSerializer(serializers.Serializer):
    threshold = serializers.FloatField()
    nips_pain_threshold = serializers.IntegerField()
    nips_rule = serializers.CharField()
    alert_cooldown_minutes = serializers.IntegerField()
    claim_timeout_minutes = serializers.IntegerField()
    double_scoring_share = serializers.FloatField()
    missed_pain_target = serializers.FloatField(allow_null=True)
    updated_at = serializers.DateTimeField()


class UnitOutputSerializer(serializers.ModelSerializer):
    settings = serializers.SerializerMethodField()

    class Meta:
        model = Unit
        fields = ["id", "name", "code", "settings"]

    @extend_schema_field(UnitSettingsOutputSerializer)
    def get_settings(self, unit) -> dict:
        return UnitSettingsOutputSerializer(services.unit_settings_get(unit=unit)).data


class UnitListApi(APIView):
    """Your unit with its triage settings (ML engineers: every unit)."""

    permission_classes = [IsClinicianOrMLEngineer]

    @extend_schema(responses=UnitOutputSerializer(many=True))
    def get(self, request):
        return paginate(self, request, selectors.units_visible(user=request.user), UnitOutputSerializer)


class UnitDetailApi(APIView):
    """Read a unit's settings; PATCH changes them (that unit's admin only; audited)."""

    class InputSerializer(serializers.Serializer):
        threshold = serializers.FloatField(required=False, min_value=0.5, max_value=1.0)
        nips_pain_threshold = serializers.IntegerField(required=False, min_value=1, max_value=7)
        alert_cooldown_minutes = serializers.IntegerField(required=False, min_value=0, max_value=24 * 60)
        claim_timeout_minutes = serializers.IntegerField(required=False, min_value=1, max_value=240)
        double_scoring_share = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
        missed_pain_target = serializers.FloatField(required=False, allow_null=True, min_value=0.001, max_value=0.5)

        def validate(self, attrs):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Not an editable unit setting."] for name in unknown})
            if not attrs:
                raise serializers.ValidationError("Give at least one setting to change.")
            return attrs

    def get_permissions(self):
        if self.request.method == "PATCH":
            return [IsUnitAdmin()]
        return [IsClinicianOrMLEngineer()]

    def get_object(self, pk: int) -> Unit:
        return get_object_or_404(selectors.units_visible(user=self.request.user), pk=pk)

    @extend_schema(responses=UnitOutputSerializer)
    def get(self, request, pk: int):
        return Response(UnitOutputSerializer(self.get_object(pk)).data)

    @extend_schema(request=InputSerializer, responses=UnitOutputSerializer)
    def patch(self, request, pk: int):
        unit = self.get_object(pk)
        payload = request.data.get("settings", request.data) if hasattr(request.data, "get") else request.data
        if hasattr(payload, "dict"):
            payload = payload.dict()
        serializer = self.InputSerializer(data=payload)
        serializer.is_valid(raise_exception=True)
        services.unit_settings_update(unit=unit, actor=request.user, changes=serializer.validated_data, request=request)
        unit.refresh_from_db()
        return Response(UnitOutputSerializer(unit).data)


# --- Frames ------------------------------------------------------------------------------


class PredictionOutputSerializer(serializers.Serializer):
    p_pain = serializers.FloatField()
    label = serializers.CharField()
    confidence = serializers.FloatField()
    threshold = serializers.FloatField()
    routed_to = serializers.CharField()
    model_version = serializers.CharField(source="model_version.label")
    model_version_id = serializers.IntegerField()
    weights_sha256 = serializers.CharField()
    frame_sha256 = serializers.CharField()
    box = serializers.ListField(child=serializers.IntegerField())
    detector = serializers.CharField(source="detector_name")
    timings_ms = serializers.DictField(child=serializers.FloatField())
    case = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_case(self, prediction: Prediction) -> dict | None:
        case = getattr(prediction, "case", None)
        if case is None:
            return None
        return {"id": case.pk, "status": case.status, "assessments_required": case.assessments_required}


class FrameOutputSerializer(serializers.ModelSerializer):
    neonate = serializers.CharField(source="neonate.mrn")
    frame_sha256 = serializers.CharField(source="sha256")
    format = serializers.CharField(source="image_format")
    prediction = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Frame
        fields = [
            "id",
            "status",
            "reason",
            "neonate",
            "captured_at",
            "received_at",
            "frame_sha256",
            "format",
            "width",
            "height",
            "size_bytes",
            "clip",
            "clip_time_s",
            "attempts",
            "status_changed_at",
            "prediction",
            "url",
        ]

    @extend_schema_field(PredictionOutputSerializer(allow_null=True))
    def get_prediction(self, frame: Frame) -> dict | None:
        if self.context.get("just_queued"):
            return None  # answered 202: not scored yet, and the upload path saves the query
        prediction = selectors.frame_latest_prediction(frame=frame)
        return PredictionOutputSerializer(prediction).data if prediction else None

    def get_url(self, frame: Frame) -> str:
        return reverse("api-frame-detail", kwargs={"pk": frame.pk})


@functools.cache
def _queued_frame_serializer() -> FrameOutputSerializer:
    # One instance for every upload answered 202: building a ModelSerializer's 17 fields per
    # request was ~90% of the body's cost (0.30 ms of CPU, 0.035 ms shared). Its context is constant
    # and to_representation keeps no per-call state, so sharing it between requests and threads is safe.
    return FrameOutputSerializer(context={"just_queued": True})


def _queued_frame_representation(frame: Frame) -> dict:
    """``FrameOutputSerializer(frame, context={"just_queued": True}).data``, at a fraction of the cost."""
    return _queued_frame_serializer().to_representation(frame)


class FrameListCreateApi(CappedUploadMixin, APIView):
    """Upload a face frame (device or clinician) -> 202 queued; list frames (paginated, ``?neonate=MRN``).

    The same image for the same neonate answers 200 with the existing frame (``duplicate: true``).
    """

    permission_classes = [IsClinicianOrDevice]

    class InputSerializer(serializers.Serializer):
        image = serializers.FileField(allow_empty_file=True, use_url=False)
        neonate = serializers.CharField(max_length=64, help_text="The neonate's MRN.")
        captured_at = serializers.DateTimeField(required=False, allow_null=True)

    @extend_schema(
        parameters=[
            OpenApiParameter("neonate", str, description="Only this neonate's frames (MRN)."),
            OpenApiParameter("status", str, enum=Frame.Status.values, description="Only frames in this state."),
        ],
        responses=FrameOutputSerializer(many=True),
    )
    def get(self, request):
        queryset = selectors.frames_visible(user=request.user, neonate_mrn=request.query_params.get("neonate") or None)
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Frame.Status.values:
                raise exceptions.ValidationError({"status": [f"Must be one of {', '.join(Frame.Status.values)}."]})
            queryset = queryset.filter(status=wanted)
        return paginate(self, request, queryset, FrameOutputSerializer)

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={
            202: FrameOutputSerializer,
            200: FrameOutputSerializer,
            413: inline_serializer(
                "UploadTooLarge", {"detail": serializers.CharField(), "limit_bytes": serializers.IntegerField()}
            ),
        },
    )
    def post(self, request):
        self.raise_if_upload_too_large(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        neonate = _upload_neonate(request=request, mrn=serializer.validated_data["neonate"])
        frame, created = services.frame_ingest(
            neonate=neonate,
            image_file=serializer.validated_data["image"],
            captured_at=serializer.validated_data.get("captured_at"),
            device=_caller_device(request),
            uploaded_by=request.user,
        )
        if created:
            body = {**_queued_frame_representation(frame), "duplicate": False}
        else:
            body = {**FrameOutputSerializer(frame).data, "duplicate": True}
        code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        return Response(body, status=code, headers={"Location": body["url"]})


class FrameDetailApi(APIView):
    """A frame's state and, once scored, its prediction and routing."""

    permission_classes = [IsClinicianOrDevice]

    @extend_schema(responses=FrameOutputSerializer)
    def get(self, request, pk: int):
        frame = get_object_or_404(selectors.frames_visible(user=request.user), pk=pk)
        return Response(FrameOutputSerializer(frame).data)


# --- Clips -------------------------------------------------------------------------------


class ClipOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    reason = serializers.CharField()
    neonate = serializers.CharField(source="neonate.mrn")
    captured_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    sha256 = serializers.CharField()
    keyframe_count = serializers.IntegerField()
    frames = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    def get_frames(self, clip) -> list[int]:
        return list(clip.frames.order_by("clip_time_s", "pk").values_list("pk", flat=True))

    def get_url(self, clip) -> str:
        return reverse("api-clip-detail", kwargs={"pk": clip.pk})


class ClipCreateApi(CappedUploadMixin, APIView):
    """Upload a short video (multipart ``video``); keyframes are extracted on a worker, each becomes a frame."""

    permission_classes = [IsClinicianOrDevice]
    upload_limit_setting = "NEOPAIN_MAX_CLIP_BYTES"

    class InputSerializer(serializers.Serializer):
        video = serializers.FileField(allow_empty_file=True, use_url=False)
        neonate = serializers.CharField(max_length=64, help_text="The neonate's MRN.")
        captured_at = serializers.DateTimeField(required=False, allow_null=True, help_text="When the clip starts.")

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={202: ClipOutputSerializer, 200: ClipOutputSerializer},
    )
    def post(self, request):
        self.raise_if_upload_too_large(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        neonate = _upload_neonate(request=request, mrn=serializer.validated_data["neonate"])
        clip, created = services.clip_ingest(
            neonate=neonate,
            video_file=serializer.validated_data["video"],
            captured_at=serializer.validated_data.get("captured_at"),
            device=_caller_device(request),
            uploaded_by=request.user,
        )
        body = {**ClipOutputSerializer(clip).data, "duplicate": not created}
        code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        return Response(body, status=code, headers={"Location": body["url"]})


class ClipDetailApi(APIView):
    permission_classes = [IsClinicianOrDevice]

    @extend_schema(responses=ClipOutputSerializer)
    def get(self, request, pk: int):
        clip = get_object_or_404(selectors.clips_visible(user=request.user), pk=pk)
        return Response(ClipOutputSerializer(clip).data)


# --- Alerts ------------------------------------------------------------------------------


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


class AlertListApi(APIView):
    """Open (unacknowledged) pain alerts of your unit, newest first."""

    permission_classes = [IsClinician]

    @extend_schema(responses=AlertOutputSerializer(many=True))
    def get(self, request):
        return paginate(self, request, selectors.alerts_open(user=request.user), AlertOutputSerializer)


# --- Models ------------------------------------------------------------------------------


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


class ModelVersionListApi(APIView):
    """Registered models (ML engineers: all; clinicians: global and their unit's)."""

    permission_classes = [IsClinicianOrMLEngineer]

    @extend_schema(responses=ModelVersionOutputSerializer(many=True))
    def get(self, request):
        return paginate(
            self, request, selectors.model_versions_visible(user=request.user), ModelVersionOutputSerializer
        )


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


# --- Health ------------------------------------------------------------------------------


class HealthApi(APIView):
    """Liveness for load balancers and compose health checks: 200 when the database answers, else 503."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=inline_serializer("Health", {"status": serializers.CharField()}))
    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Response({"status": "ok"})
