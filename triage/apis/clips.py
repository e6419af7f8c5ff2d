"""Clip ingest and a clip's state."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from triage import selectors, services
from triage.apis.common import CappedUploadMixin, duplicate_upload_schema
from triage.permissions import IsClinicianOrDevice


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
        responses={202: ClipOutputSerializer, 200: duplicate_upload_schema("clip")},
    )
    def post(self, request):
        data, origin = self.upload_accept(request)
        clip, created = services.clip_ingest(video_file=data["video"], **origin)
        if not created and (answer := self.duplicate_of_another_upload(request, clip)):
            return answer
        return self.upload_response({**ClipOutputSerializer(clip).data, "duplicate": not created}, created=created)


class ClipDetailApi(APIView):
    permission_classes = [IsClinicianOrDevice]

    @extend_schema(responses=ClipOutputSerializer)
    def get(self, request, pk: int):
        clip = get_object_or_404(selectors.clips_visible(user=request.user), pk=pk)
        return Response(ClipOutputSerializer(clip).data)
