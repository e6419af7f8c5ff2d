"""Patient images: never a public media URL; authorised, audited, not cached."""

from __future__ import annotations

import mimetypes

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404

from triage.models import Frame, Prediction, Role
from triage.services.audit import image_view_record

# Nurses and unit admins of the image's unit only: an ML engineer sees no patient images, with or
# without a unit (docs/security.md, item 24).
IMAGE_ROLES = (Role.NURSE, Role.UNIT_ADMIN)


def _image_owner_check(request, unit_id: int) -> None:
    user = request.user
    if user.is_superuser:
        return
    if user.role not in IMAGE_ROLES:
        raise PermissionDenied("Your role may not view patient images.")
    if user.unit_id != unit_id:
        raise Http404("No such image.")


def _serve_private_file(file_field, filename: str) -> FileResponse:
    if not file_field:
        raise Http404("No image stored.")
    try:
        handle = file_field.open("rb")
    except (FileNotFoundError, OSError) as exc:
        raise Http404("Image file missing.") from exc
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@login_required
def frame_image(request, pk: int):
    frame = Frame.objects.filter(pk=pk).select_related("unit").first()
    if frame is None:
        raise Http404("No such image.")
    _image_owner_check(request, frame.unit_id)
    response = _serve_private_file(frame.image, f"frame-{frame.pk}{frame.storage_suffix()}")
    image_view_record(user=request.user, kind="frame", obj=frame, unit=frame.unit, request=request)
    return response


def _stored_suffix(file_field) -> str:
    """``.jpg`` for crops stored since JPEG display copies, ``.png`` for older ones (sets the content type)."""
    return ".jpg" if str(file_field.name or "").lower().endswith(".jpg") else ".png"


def _prediction_for_image(request, pk: int) -> Prediction:
    prediction = Prediction.objects.filter(pk=pk).select_related("frame__unit").first()
    if prediction is None:
        raise Http404("No such image.")
    _image_owner_check(request, prediction.frame.unit_id)
    return prediction


@login_required
def prediction_crop(request, pk: int):
    prediction = _prediction_for_image(request, pk)
    response = _serve_private_file(prediction.crop, f"crop-{prediction.pk}{_stored_suffix(prediction.crop)}")
    image_view_record(
        user=request.user, kind="crop", obj=prediction, unit=prediction.frame.unit, request=request
    )
    return response


@login_required
def prediction_saliency(request, pk: int):
    prediction = _prediction_for_image(request, pk)
    response = _serve_private_file(
        prediction.saliency, f"saliency-{prediction.pk}{_stored_suffix(prediction.saliency)}"
    )
    image_view_record(
        user=request.user, kind="saliency", obj=prediction, unit=prediction.frame.unit, request=request
    )
    return response
