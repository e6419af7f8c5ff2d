"""Building blocks of the REST API views: capped uploads, pagination, the unit-scoped list view."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from triage import selectors, services
from triage.models import Neonate
from triage.pagination import PageNumberPagination
from triage.permissions import user_is_device
from triage.throttles import UPLOAD_THROTTLES


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
    """Installs :class:`CappedUploadHandler` before DRF (or a CSRF check) parses the body; uploads
    are rate-limited per camera and per person (429 with ``Retry-After``)."""

    upload_limit_setting = "NEOPAIN_MAX_UPLOAD_BYTES"
    throttle_classes = UPLOAD_THROTTLES

    def initialize_request(self, request, *args, **kwargs):
        self.upload_cap = CappedUploadHandler(request, limit=getattr(settings, self.upload_limit_setting))
        if request.method == "POST":
            request.upload_handlers = [self.upload_cap, *request.upload_handlers]
        return super().initialize_request(request, *args, **kwargs)

    def raise_if_upload_too_large(self, request) -> None:
        request.data  # noqa: B018 - parse now, so the cap handler has seen the body
        if self.upload_cap.exceeded:
            raise services.UploadTooLarge(self.upload_cap.limit)

    def upload_accept(self, request) -> tuple[dict, dict]:
        """The upload's validated fields, and where it comes from: the keyword arguments every ingest service takes.

        413 past the byte cap; the neonate must be an active one of the caller's unit.
        """
        self.raise_if_upload_too_large(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        origin = {
            "neonate": upload_neonate(request=request, mrn=data["neonate"]),
            "captured_at": data.get("captured_at"),
            "device": caller_device(request),
            "uploaded_by": request.user,
        }
        return data, origin

    @staticmethod
    def duplicate_of_another_upload(request, upload) -> Response | None:
        """The answer to re-sent bytes that another camera (or person) uploaded first: the id only,
        never their prediction, case or status (a camera reads back only its own uploads)."""
        if upload.uploaded_by_id == request.user.pk:
            return None
        return Response({"id": upload.pk, "duplicate": True}, status=status.HTTP_200_OK)

    @staticmethod
    def upload_response(body: dict, *, created: bool) -> Response:
        """202 for a new upload, 200 for a duplicate of a stored one; ``Location`` is the resource."""
        code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        return Response(body, status=code, headers={"Location": body["url"]})


# One component for both upload endpoints (two inline serializers of one name would collide).
DUPLICATE_UPLOAD = inline_serializer(
    "DuplicateUpload",
    {
        "id": serializers.IntegerField(),
        "duplicate": serializers.BooleanField(help_text="Always true: these bytes were uploaded already."),
    },
)


def duplicate_upload_schema(kind: str) -> OpenApiResponse:
    """The 200 of an upload endpoint: a duplicate (the caller's own in full, someone else's as its id)."""
    return OpenApiResponse(
        DUPLICATE_UPLOAD, description=f"Uploaded already: your own {kind} in full, someone else's as its id only."
    )


def paginate(view: APIView, request, queryset, serializer_class):
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context={"request": request}).data)


def upload_neonate(*, request, mrn: str) -> Neonate:
    neonate = selectors.neonate_for_upload(user=request.user, mrn=mrn)
    if neonate is None:
        # Same answer whether the MRN is unknown or belongs to another unit: no cross-unit leak.
        raise exceptions.ValidationError({"neonate": [f"No active neonate with MRN {mrn!r} in your unit."]})
    return neonate


def caller_device(request):
    return request.user.device if user_is_device(request.user) else None


class UnitScopedListApi(APIView):
    """GET: one page of :meth:`get_queryset`, rendered by ``output_serializer``.

    A subclass names its serializer and reads its rows through a unit-scoping selector in
    :meth:`get_queryset` (the permission classes check the role); query parameters it reads are listed
    in ``list_parameters``. The OpenAPI schema of ``get`` is set from these two attributes.
    """

    output_serializer: type[serializers.BaseSerializer]
    list_parameters: tuple = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "output_serializer" in cls.__dict__:
            parameters = list(cls.list_parameters) or None
            extend_schema_view(get=extend_schema(parameters=parameters, responses=cls.output_serializer(many=True)))(
                cls
            )

    def get_queryset(self, request) -> QuerySet:
        raise NotImplementedError(f"{type(self).__name__} must read its rows through a unit-scoped selector.")

    def get(self, request):
        return paginate(self, request, self.get_queryset(request), self.output_serializer)
