"""Writes for the triage domain. Each service owns its transaction."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from triage.models import (
    Alert,
    AuditEvent,
    Clip,
    Frame,
    ModelVersion,
    Neonate,
    Prediction,
    TriageCase,
    Unit,
    UnitSettings,
    User,
)

logger = logging.getLogger(__name__)


def client_ip(request) -> str | None:
    """The caller's address as seen by Django (behind a proxy, configure it to set REMOTE_ADDR)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    action: str,
    actor: User | None = None,
    unit: Unit | None = None,
    obj: Any = None,
    object_type: str = "",
    object_id: str | int = "",
    before: dict | None = None,
    after: dict | None = None,
    request=None,
    actor_username: str = "",
) -> AuditEvent:
    """Append one audit row. ``obj`` (a model instance) fills object type and id."""
    if obj is not None:
        object_type = object_type or obj._meta.label
        object_id = object_id or obj.pk
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    if unit is None and actor is not None:
        unit = getattr(actor, "unit", None)
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_username=actor_username or (actor.get_username() if actor else ""),
        unit=unit,
        object_type=object_type,
        object_id=str(object_id or ""),
        before=before,
        after=after,
        ip=client_ip(request),
    )


def unit_settings_get(*, unit: Unit) -> UnitSettings:
    """The unit's triage policy, created with the paper's defaults on first use."""
    settings_row, _ = UnitSettings.objects.get_or_create(unit=unit)
    return settings_row


@transaction.atomic
def alert_raise(
    *,
    neonate: Neonate,
    source: str,
    prediction: Prediction | None = None,
    assessment=None,
    at=None,
) -> tuple[Alert, bool]:
    """Raise a pain alert, or count it on the open episode's alert if inside the cooldown.

    Returns (alert, created). The neonate row is locked so two workers can't open two episodes.
    """
    at = at or timezone.now()
    Neonate.objects.select_for_update().filter(pk=neonate.pk).first()
    cooldown = timedelta(minutes=unit_settings_get(unit=neonate.unit).alert_cooldown_minutes)
    latest = Alert.objects.filter(neonate=neonate).order_by("-last_event_at").first()
    if latest is not None and latest.acknowledged_at is None and cooldown and latest.in_cooldown(at, cooldown):
        Alert.objects.filter(pk=latest.pk).update(suppressed_count=latest.suppressed_count + 1, last_event_at=at)
        latest.refresh_from_db()
        return latest, False
    if (
        latest is not None
        and cooldown
        and latest.acknowledged_at
        and at - latest.acknowledged_at < cooldown
        and latest.in_cooldown(at, cooldown)
    ):
        # Acknowledged moments ago: the team is already at the bedside; count, don't re-page.
        Alert.objects.filter(pk=latest.pk).update(suppressed_count=latest.suppressed_count + 1, last_event_at=at)
        latest.refresh_from_db()
        return latest, False
    alert = Alert.objects.create(
        neonate=neonate,
        unit=neonate.unit,
        source=source,
        prediction=prediction,
        assessment=assessment,
        created_at=at,
        last_event_at=at,
    )
    audit_record(action="alert.raised", unit=neonate.unit, obj=alert, after={"source": source, "neonate": neonate.mrn})
    logger.info("alert %s raised for neonate %s (source %s)", alert.pk, neonate.pk, source)
    return alert, True


# --- Unit settings -----------------------------------------------------------------------

UNIT_SETTINGS_EDITABLE = (
    "threshold",
    "nips_pain_threshold",
    "alert_cooldown_minutes",
    "claim_timeout_minutes",
    "double_scoring_share",
    "missed_pain_target",
)


def unit_settings_snapshot(settings_row: UnitSettings) -> dict[str, Any]:
    """The editable policy as plain JSON (what the audit log stores as before/after)."""
    return {name: getattr(settings_row, name) for name in UNIT_SETTINGS_EDITABLE}


def unit_settings_can_change(*, user, unit: Unit) -> bool:
    """Only the unit's own admin (or a superuser) changes its triage policy."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or (user.is_unit_admin and user.unit_id == unit.pk))


@transaction.atomic
def unit_settings_update(*, unit: Unit, actor: User | None, changes: dict, request=None) -> UnitSettings:
    """Validate and apply ``changes`` to the unit's policy; audited with before/after.

    Raises ``django.core.exceptions.ValidationError`` (field errors) for unknown fields or bad
    values, ``PermissionDenied`` when ``actor`` is not the unit's admin. ``actor=None`` is the
    system (management commands).
    """
    from django.core.exceptions import PermissionDenied, ValidationError

    if actor is not None and not unit_settings_can_change(user=actor, unit=unit):
        raise PermissionDenied("Only this unit's admin may change its settings.")
    unknown = sorted(set(changes) - set(UNIT_SETTINGS_EDITABLE))
    if unknown:
        raise ValidationError({name: ["Not an editable unit setting."] for name in unknown})
    settings_row = UnitSettings.objects.select_for_update().get(pk=unit_settings_get(unit=unit).pk)
    before = unit_settings_snapshot(settings_row)
    for name, value in changes.items():
        if value == "" and name == "missed_pain_target":
            value = None
        setattr(settings_row, name, value)
    # full_clean coerces ("0.6" -> 0.6) and runs the field validators (threshold in [0.5, 1] ...).
    settings_row.full_clean(exclude=["unit"])
    after = unit_settings_snapshot(settings_row)
    if after == before:
        return settings_row
    settings_row.save()
    changed = {k for k in after if after[k] != before[k]}
    audit_record(
        action="unit_settings.updated",
        actor=actor,
        unit=unit,
        obj=settings_row,
        before={k: before[k] for k in sorted(changed)},
        after={k: after[k] for k in sorted(changed)},
        request=request,
    )
    logger.info("unit %s settings changed: %s", unit.code, ", ".join(sorted(changed)))
    return settings_row


# --- Model versions ----------------------------------------------------------------------


def model_version_can_manage(*, user, model_version_unit: Unit | None) -> bool:
    """ML engineers and superusers manage models; a unit admin only her own unit's models."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser or user.is_ml_engineer:
        return True
    return bool(user.is_unit_admin and model_version_unit is not None and user.unit_id == model_version_unit.pk)


def _bundle_description(*, path, kind: str) -> tuple[str, dict[str, Any]]:
    """(sha256, metadata) of a classifier bundle or detector weights file (no model is built)."""
    from django.core.exceptions import ValidationError

    from inference import bundle as bundle_lib

    if kind == "detector":
        try:
            sha256 = bundle_lib.sha256_file(path)
        except OSError as exc:
            raise ValidationError({"bundle_path": [f"Cannot read {path}: {exc.strerror or exc}"]}) from exc
        return sha256, {"name": path.stem, "version": sha256[:12], "backbone": "", "architecture": "detector"}
    try:
        payload, sha256 = bundle_lib.read_bundle(path)
    except bundle_lib.BundleError as exc:
        raise ValidationError({"bundle_path": [f"Not a valid model bundle: {exc}"]}) from exc
    return sha256, dict(payload["metadata"])


def _json_safe(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def model_version_register(
    *,
    bundle_path,
    kind: str = "classifier",
    unit: Unit | None = None,
    actor: User | None = None,
    status: str = "candidate",
    metrics: dict | None = None,
) -> ModelVersion:
    """Register a model bundle (or detector weights) by its sha256; idempotent on (kind, sha256, unit).

    Metadata (name, version, backbone, architecture, is_bootstrap, metrics) comes from the
    bundle itself. ``status='active'`` registers and activates in one go.
    """
    from pathlib import Path

    from django.core.exceptions import ValidationError

    if kind not in ModelVersion.Kind.values:
        raise ValidationError({"kind": [f"Must be one of {', '.join(ModelVersion.Kind.values)}."]})
    if status not in ModelVersion.Status.values:
        raise ValidationError({"status": [f"Must be one of {', '.join(ModelVersion.Status.values)}."]})
    path = Path(bundle_path).expanduser().resolve()
    if not path.is_file():
        raise ValidationError({"bundle_path": [f"No such file: {path}"]})
    sha256, metadata = _bundle_description(path=path, kind=kind)
    with transaction.atomic():
        existing = ModelVersion.objects.select_for_update().filter(kind=kind, sha256=sha256, unit=unit).first()
        if existing is not None:
            changed = []
            if metrics and existing.metrics != _json_safe(metrics):
                existing.metrics = _json_safe(metrics)
                changed.append("metrics")
            if str(existing.bundle_path) != str(path) and not Path(existing.bundle_path).is_file():
                # Same weights moved: follow the file so the worker can still load it.
                existing.bundle_path = str(path)
                changed.append("bundle_path")
            if changed:
                existing.save(update_fields=changed)
            model_version = existing
            created = False
        else:
            model_version = ModelVersion.objects.create(
                kind=kind,
                unit=unit,
                name=str(metadata.get("name") or path.stem)[:120],
                version=str(metadata.get("version") or sha256[:12])[:40],
                bundle_path=str(path),
                sha256=sha256,
                backbone=str(metadata.get("backbone") or "")[:60],
                architecture=str(metadata.get("architecture") or "")[:40],
                is_bootstrap=bool(metadata.get("is_bootstrap", False)),
                metadata=_json_safe({k: v for k, v in metadata.items() if k != "metrics"}),
                metrics=_json_safe(metrics if metrics is not None else metadata.get("metrics") or {}),
                status=ModelVersion.Status.RETIRED
                if status == ModelVersion.Status.RETIRED
                else ModelVersion.Status.CANDIDATE,
                created_by=actor if actor is not None and actor.is_authenticated else None,
            )
            created = True
            audit_record(
                action="model.registered",
                actor=actor,
                unit=unit,
                obj=model_version,
                after={
                    "kind": kind,
                    "name": model_version.name,
                    "version": model_version.version,
                    "sha256": sha256,
                    "bundle_path": str(path),
                },
            )
    logger.info(
        "model %s %s (%s, sha256 %s)",
        model_version.label,
        "registered" if created else "already registered",
        kind,
        sha256[:12],
    )
    if status == ModelVersion.Status.ACTIVE and model_version.status != ModelVersion.Status.ACTIVE:
        model_version = model_version_activate(model_version=model_version, actor=actor)
    return model_version


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion, actor: User | None, request=None) -> ModelVersion:
    """Make ``model_version`` the active one of its kind and unit, retiring the previous one.

    Refuses (ValidationError) a bundle whose file is missing or whose hash no longer matches its
    registration. Workers resolve the active model per batch, so they switch on their next batch.
    """
    from pathlib import Path

    from django.core.exceptions import PermissionDenied, ValidationError

    from inference import bundle as bundle_lib

    if actor is not None and not model_version_can_manage(user=actor, model_version_unit=model_version.unit):
        raise PermissionDenied("Only ML engineers may activate models.")
    model_version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
    if model_version.status == ModelVersion.Status.ACTIVE:
        return model_version
    path = Path(model_version.bundle_path)
    try:
        actual = bundle_lib.sha256_file(path)
    except OSError as exc:
        raise ValidationError(
            {"bundle_path": [f"Cannot read the registered file {path}: {exc.strerror or exc}"]}
        ) from exc
    if actual != model_version.sha256:
        raise ValidationError(
            {
                "bundle_path": [
                    f"{path} has sha256 {actual[:12]}..., not the registered {model_version.sha256[:12]}...; "
                    "register the new file instead."
                ]
            }
        )
    previous = list(
        ModelVersion.objects.select_for_update().filter(
            kind=model_version.kind, unit=model_version.unit, status=ModelVersion.Status.ACTIVE
        )
    )
    for old in previous:
        old.status = ModelVersion.Status.RETIRED
        old.save(update_fields=["status"])
    model_version.status = ModelVersion.Status.ACTIVE
    model_version.activated_at = timezone.now()
    model_version.activated_by = actor if actor is not None and actor.is_authenticated else None
    model_version.save(update_fields=["status", "activated_at", "activated_by"])
    audit_record(
        action="model.activated",
        actor=actor,
        unit=model_version.unit,
        obj=model_version,
        before={"active": [{"id": old.pk, "label": old.label, "sha256": old.sha256} for old in previous]},
        after={
            "active": {
                "id": model_version.pk,
                "label": model_version.label,
                "sha256": model_version.sha256,
                "kind": model_version.kind,
            }
        },
        request=request,
    )
    logger.info(
        "model %s activated (%s, unit %s)",
        model_version.label,
        model_version.kind,
        model_version.unit.code if model_version.unit else "all",
    )
    # Frames parked while no model was active can go now.
    transaction.on_commit(lambda: frames_sweep(queued_reason_prefix=WAITING_FOR_MODEL))
    return model_version


# --- Frame ingest ------------------------------------------------------------------------


class UploadTooLarge(Exception):
    """The upload is over its byte cap (answered with 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"File is over the {limit}-byte limit.")
        self.limit = limit


def upload_read_capped(*, upload, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` from an uploaded file (or bytes); never loads an unbounded upload."""
    if isinstance(upload, (bytes, bytearray, memoryview)):
        data = bytes(upload)
    else:
        declared = getattr(upload, "size", None)
        if declared is not None and declared > max_bytes:
            raise UploadTooLarge(max_bytes)
        if hasattr(upload, "seek"):
            try:
                upload.seek(0)
            except (OSError, ValueError):
                pass
        data = upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UploadTooLarge(max_bytes)
    return data


def frame_captured_at_check(*, captured_at, now=None):
    """Reject timestamps from the future (a camera clock off by more than the allowed skew)."""
    from django.conf import settings
    from django.core.exceptions import ValidationError

    if captured_at is None:
        return None
    if timezone.is_naive(captured_at):
        captured_at = timezone.make_aware(captured_at, timezone.get_default_timezone())
    now = now or timezone.now()
    skew = settings.NEOPAIN_MAX_FUTURE_SKEW_SECONDS
    if captured_at > now + timedelta(seconds=skew):
        raise ValidationError(
            {
                "captured_at": [
                    f"{captured_at.isoformat()} is in the future (server time {now.isoformat()}, "
                    f"allowed clock skew {skew} s). Check the camera's clock."
                ]
            }
        )
    return captured_at


#: ``Device.last_seen_at`` is refreshed at most this often: a camera uploading several frames a
#: second otherwise wrote (and row-locked) its device row in every upload's transaction.
DEVICE_SEEN_RESOLUTION = timedelta(seconds=60)


def frame_ingest(
    *,
    neonate: Neonate,
    image_file,
    captured_at=None,
    device=None,
    uploaded_by: User | None,
    clip=None,
    clip_time_s: float | None = None,
) -> tuple[Frame, bool]:
    """Validate, store and queue one face image. Returns ``(frame, created)``.

    Validated before anything is stored: byte cap, content sniffing (not the client's name or
    content type), pixel cap, clock skew. The same image for the same neonate returns the
    existing frame (``created=False``). The file is stored under a server-generated name and
    ``frame_process`` is enqueued after commit; if the broker is down the frame stays ``queued``
    and the sweeper enqueues it later.
    """
    import hashlib

    from django.conf import settings
    from django.core.exceptions import ValidationError
    from django.core.files.base import ContentFile
    from django.db import IntegrityError

    from inference.decode import UnreadableImage, sniff_image

    max_bytes = settings.NEOPAIN_MAX_UPLOAD_BYTES
    data = upload_read_capped(upload=image_file, max_bytes=max_bytes)
    if clip is None:
        captured_at = frame_captured_at_check(captured_at=captured_at)
    try:
        sniffed = sniff_image(data, max_pixels=settings.NEOPAIN_MAX_IMAGE_PIXELS, max_bytes=max_bytes)
    except UnreadableImage as exc:
        raise ValidationError({"image": [f"Not an acceptable image: {exc.reason}."]}) from exc
    sha256 = hashlib.sha256(data).hexdigest()
    now = timezone.now()

    # No look-up for a duplicate first: the unique (neonate, sha256) constraint refuses it at the
    # insert (a rare re-upload then costs a file written and removed; every upload saves a query).
    frame = Frame(
        neonate=neonate,
        unit_id=neonate.unit_id,
        device=device,
        uploaded_by=uploaded_by if uploaded_by is not None and uploaded_by.is_authenticated else None,
        clip=clip,
        clip_time_s=clip_time_s,
        captured_at=captured_at or now,
        received_at=now,
        sha256=sha256,
        image_format=sniffed["format"],
        width=sniffed["width"],
        height=sniffed["height"],
        size_bytes=len(data),
        status=Frame.Status.QUEUED,
        status_changed_at=now,
    )
    frame.image.save("upload", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            frame.save()
            if device is not None and (
                device.last_seen_at is None or now - device.last_seen_at >= DEVICE_SEEN_RESOLUTION
            ):
                type(device).objects.filter(pk=device.pk).update(last_seen_at=now)
            transaction.on_commit(lambda: frames_enqueue(frame_ids=[frame.pk]))
    except IntegrityError:
        # The same image for this neonate is stored already (a re-upload, or a concurrent upload
        # that won the race): answer with that frame.
        frame.image.storage.delete(frame.image.name)
        existing = Frame.objects.filter(neonate=neonate, sha256=sha256).first()
        if existing is None:
            raise
        logger.info("frame %s: duplicate upload for neonate %s", existing.pk, neonate.pk)
        return existing, False
    except BaseException:
        # The row was not written (database gone, request aborted): leave no orphan image on disk.
        frame.image.storage.delete(frame.image.name)
        raise
    logger.info(
        "frame %s queued for neonate %s (%s %dx%d, %d bytes)",
        frame.pk,
        neonate.pk,
        frame.image_format,
        frame.width,
        frame.height,
        frame.size_bytes,
    )
    return frame, True


def frames_enqueue(*, frame_ids: list[int]) -> int:
    """Publish ``frame_process`` for each id; a broker outage is logged, not raised.

    The frames stay ``queued`` in the database, so ``frames_sweep`` publishes them again later.
    Returns how many were published.
    """
    from triage.tasks import frame_process

    published = 0
    for frame_id in frame_ids:
        try:
            frame_process.apply_async(args=[frame_id], retry=True, retry_policy=BROKER_PUBLISH_RETRY)
            published += 1
        except Exception as exc:  # kombu/redis/sqlalchemy each raise their own connection errors
            logger.warning(
                "broker unavailable, frame %s stays queued for the sweeper: %s: %s", frame_id, type(exc).__name__, exc
            )
            break
    return published


# Publishing must fail fast when the broker is down: the upload has been stored already.
BROKER_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


# --- Clip ingest -------------------------------------------------------------------------

_VIDEO_SIGNATURES = (
    # (offset, magic, extension)
    (4, b"ftyp", ".mp4"),
    (0, b"\x1a\x45\xdf\xa3", ".mkv"),
    (0, b"RIFF", ".avi"),
)


def video_sniff(data: bytes) -> str:
    """The container's file extension from its magic bytes; ValidationError when not a video."""
    from django.core.exceptions import ValidationError

    if not data:
        raise ValidationError({"video": ["Empty file."]})
    for offset, magic, extension in _VIDEO_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if extension == ".avi" and data[8:12] != b"AVI ":
                continue
            if extension == ".mp4" and data[8:10] == b"qt":
                return ".mov"
            return extension
    raise ValidationError({"video": ["Not an accepted video container (MP4/MOV, Matroska/WebM or AVI)."]})


def clip_ingest(*, neonate: Neonate, video_file, captured_at=None, device=None, uploaded_by: User | None):
    """Validate, store and queue a video clip; keyframes become frames on a worker. Returns ``(clip, created)``."""
    import hashlib

    from django.conf import settings
    from django.core.files.base import ContentFile

    data = upload_read_capped(upload=video_file, max_bytes=settings.NEOPAIN_MAX_CLIP_BYTES)
    captured_at = frame_captured_at_check(captured_at=captured_at)
    extension = video_sniff(data)
    sha256 = hashlib.sha256(data).hexdigest()
    existing = Clip.objects.filter(neonate=neonate, sha256=sha256).first()
    if existing is not None:
        return existing, False
    now = timezone.now()
    clip = Clip(
        neonate=neonate,
        unit_id=neonate.unit_id,
        uploaded_by=uploaded_by if uploaded_by is not None and uploaded_by.is_authenticated else None,
        extension=extension,
        sha256=sha256,
        captured_at=captured_at or now,
        received_at=now,
    )
    clip.video.save("upload", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            clip.save()
            if device is not None:
                type(device).objects.filter(pk=device.pk).update(last_seen_at=now)
            transaction.on_commit(lambda: clips_enqueue(clip_ids=[clip.pk]))
    except BaseException:
        # The row was not written: leave no orphan video on disk.
        clip.video.storage.delete(clip.video.name)
        raise
    logger.info("clip %s queued for neonate %s (%d bytes)", clip.pk, neonate.pk, len(data))
    return clip, True


def clips_enqueue(*, clip_ids: list[int]) -> int:
    """Publish ``clip_process`` for each id; a broker outage leaves the clip queued for the sweeper."""
    from triage.tasks import clip_process

    published = 0
    for clip_id in clip_ids:
        try:
            clip_process.apply_async(args=[clip_id], retry=True, retry_policy=BROKER_PUBLISH_RETRY)
            published += 1
        except Exception as exc:
            logger.warning("broker unavailable, clip %s stays queued: %s: %s", clip_id, type(exc).__name__, exc)
            break
    return published


def clip_process(*, clip_id: int) -> int:
    """Extract keyframes of a queued clip; each becomes a frame through ``frame_ingest``. Returns frames created."""
    import io

    from django.conf import settings

    with transaction.atomic():
        claimed = Clip.objects.filter(pk=clip_id, status__in=[Clip.Status.QUEUED]).update(status=Clip.Status.PROCESSING)
    if not claimed:
        logger.info("clip %s is not queued; nothing to do", clip_id)
        return 0
    clip = Clip.objects.select_related("neonate").get(pk=clip_id)
    try:
        from inference.keyframes import keyframes_from_bytes

        with clip.video.open("rb") as handle:
            data = handle.read(settings.NEOPAIN_MAX_CLIP_BYTES + 1)
        keyframes = keyframes_from_bytes(data, clip.extension)
    except Exception as exc:
        reason = f"keyframe extraction failed: {type(exc).__name__}: {exc}"[:500]
        Clip.objects.filter(pk=clip_id).update(status=Clip.Status.FAILED, reason=reason)
        logger.warning("clip %s: %s", clip_id, reason)
        return 0
    device = getattr(clip.uploaded_by, "device", None) if clip.uploaded_by_id else None
    created_count = 0
    for keyframe in keyframes:
        buffer = io.BytesIO()
        keyframe.image.convert("RGB").save(buffer, format="JPEG", quality=95)
        try:
            _, created = frame_ingest(
                neonate=clip.neonate,
                image_file=buffer.getvalue(),
                captured_at=clip.captured_at + timedelta(seconds=float(keyframe.time_s)),
                device=device,
                uploaded_by=clip.uploaded_by,
                clip=clip,
                clip_time_s=float(keyframe.time_s),
            )
        except Exception as exc:  # one bad keyframe must not lose the others
            logger.warning("clip %s keyframe %s skipped: %s", clip_id, keyframe.index, exc)
            continue
        created_count += int(created)
    Clip.objects.filter(pk=clip_id).update(
        status=Clip.Status.DONE if keyframes else Clip.Status.FAILED,
        keyframe_count=len(keyframes),
        reason="" if keyframes else "no keyframes could be decoded from this video",
    )
    logger.info("clip %s: %d keyframes, %d new frames", clip_id, len(keyframes), created_count)
    return created_count


# --- Frame processing (runs on the inference worker) ------------------------------------


class FramesRetry(Exception):
    """A transient fault after the claimed frames were released; the task retries with backoff."""


def _pipeline_for(*, classifier: ModelVersion, detector: ModelVersion | None):
    """The per-process cached pipeline for this model pair (loaded once, hot-swapped on activation)."""
    from django.conf import settings

    from inference.pipeline import get_pipeline

    if detector is not None:
        _detector_weights_check(detector=detector)
        detector_name, detector_weights = "yolo", detector.bundle_path
    else:
        detector_name, detector_weights = settings.NEOPAIN_DETECTOR, settings.NEOPAIN_DETECTOR_WEIGHTS or None
    pipeline = get_pipeline(
        classifier.bundle_path,
        expected_sha256=classifier.sha256,
        detector=detector_name,
        detector_weights=detector_weights,
    )
    if hasattr(pipeline, "margin"):
        pipeline.margin = settings.NEOPAIN_FACE_MARGIN
    if hasattr(pipeline, "saliency"):
        # Grad-CAM maps from the classifier's own forward pass (no second pass per nurse case).
        pipeline.saliency = settings.NEOPAIN_SALIENCY
    return pipeline, detector_name


# (path, size, mtime, inode) -> sha256: a detector file is hashed once per version on disk, not per batch.
_DETECTOR_HASHES: dict[tuple, str] = {}


def _detector_weights_check(*, detector: ModelVersion) -> None:
    """Refuse detector weights that are no longer the registered file (a YOLO ``.pt`` is a pickle).

    Raises ``BundleError`` (or ``FileNotFoundError``), which fails the batch's frames with the reason.
    """
    from pathlib import Path

    from inference.bundle import BundleError, sha256_file

    path = Path(detector.bundle_path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    actual = _DETECTOR_HASHES.get(key)
    if actual is None:
        actual = _DETECTOR_HASHES[key] = sha256_file(path)
    if actual != detector.sha256:
        raise BundleError(f"detector weights {path} have sha256 {actual[:12]}..., not the registered "
                          f"{detector.sha256[:12]}...; register the new file instead")


def pipelines_warm() -> int:
    """Load the pipeline of every active classifier now (worker start-up); returns how many."""
    from triage.selectors import active_model_for_unit

    classifiers = ModelVersion.objects.filter(kind=ModelVersion.Kind.CLASSIFIER, status=ModelVersion.Status.ACTIVE)
    loaded = 0
    for classifier in classifiers.select_related("unit"):
        detector = active_model_for_unit(unit=classifier.unit, kind=ModelVersion.Kind.DETECTOR)
        _pipeline_for(classifier=classifier, detector=detector)
        loaded += 1
    logger.info("preloaded %d model pipeline(s)", loaded)
    return loaded


def _frames_claim(*, frame_ids: list[int], batch_max: int) -> list[int]:
    """Atomically move the given frames (if claimable) plus other waiting frames to ``processing``.

    Claimable: ``queued``, or ``processing`` longer than the hard time limit (its worker died).
    On PostgreSQL ``SKIP LOCKED`` lets several workers claim side by side; SQLite serialises
    writers (IMMEDIATE transactions), which gives the same guarantee.
    """
    from django.conf import settings
    from django.db import connection
    from django.db.models import F, Q

    now = timezone.now()
    lease_cutoff = now - timedelta(seconds=max(settings.CELERY_TASK_TIME_LIMIT, 60))
    claimable = Q(status=Frame.Status.QUEUED) | Q(status=Frame.Status.PROCESSING, status_changed_at__lt=lease_cutoff)
    lock = connection.features.has_select_for_update_skip_locked
    # Most messages of a batch find their frame already claimed by the batch's first message: a
    # plain read says so without a write transaction (on SQLite, IMMEDIATE: the database's write
    # lock). Only a frame that was claimable a moment ago goes on to the locked claim below.
    if not Frame.objects.filter(pk__in=frame_ids).filter(claimable).exists():
        return []
    with transaction.atomic():
        own_qs = Frame.objects.filter(pk__in=frame_ids).filter(claimable)
        if lock:
            own_qs = own_qs.select_for_update(skip_locked=True)
        own = list(own_qs.values_list("pk", "unit_id"))
        ids = [pk for pk, _ in own]
        if own and batch_max > len(ids):
            # Batch with other waiting frames served by the same model (units sharing it).
            units = _units_sharing_model(unit_id=own[0][1])
            extra_qs = Frame.objects.filter(status=Frame.Status.QUEUED, unit_id__in=units).exclude(pk__in=ids)
            if lock:
                extra_qs = extra_qs.select_for_update(skip_locked=True)
            ids += list(extra_qs.order_by("received_at", "pk").values_list("pk", flat=True)[: batch_max - len(ids)])
        if ids:
            Frame.objects.filter(pk__in=ids).update(
                status=Frame.Status.PROCESSING, status_changed_at=now, attempts=F("attempts") + 1
            )
    return ids


def _units_sharing_model(*, unit_id: int) -> list[int]:
    """Units whose frames the same classifier scores as ``unit_id``'s (batching partners)."""
    from triage.selectors import active_model_for_unit

    unit = Unit.objects.get(pk=unit_id)
    model = active_model_for_unit(unit=unit)
    if model is None or model.unit_id is not None:
        return [unit_id]
    with_own = ModelVersion.objects.filter(
        kind=ModelVersion.Kind.CLASSIFIER, status=ModelVersion.Status.ACTIVE, unit__isnull=False
    ).values("unit_id")
    return list(Unit.objects.exclude(pk__in=with_own).values_list("pk", flat=True))


def _frames_release(*, frame_ids: list[int], reason: str = "") -> None:
    """Hand frames back to the queue (a later task or the sweeper picks them up)."""

    if frame_ids:
        Frame.objects.filter(pk__in=frame_ids, status=Frame.Status.PROCESSING).update(
            status=Frame.Status.QUEUED, reason=reason, status_changed_at=timezone.now()
        )


def _frames_fail(*, frame_ids: list[int], reason: str) -> None:

    if frame_ids:
        Frame.objects.filter(pk__in=frame_ids, status=Frame.Status.PROCESSING).update(
            status=Frame.Status.FAILED, reason=reason[:1000], status_changed_at=timezone.now()
        )
        logger.warning("frames %s failed: %s", frame_ids, reason)


WAITING_FOR_MODEL = "waiting for an active model (register one: manage.py register_model BUNDLE --activate)"


def frames_process(*, frame_ids: list[int], batch_max: int | None = None) -> dict[str, int]:
    """Score the given frames and any others waiting for the same model, in batches.

    Idempotent: only ``queued`` frames are claimed, and a (frame, model version) prediction is
    created at most once, so a duplicate delivery does nothing. Transient faults release the
    claimed frames and raise (the task retries); a soft time limit fails them with a reason.
    Returns counts by outcome.
    """
    from celery.exceptions import SoftTimeLimitExceeded
    from django.conf import settings
    from django.db import DatabaseError

    from triage.selectors import active_model_for_unit

    batch_max = batch_max or settings.NEOPAIN_BATCH_MAX
    counts = {"claimed": 0, "done": 0, "no_face": 0, "failed": 0, "duplicate": 0, "waiting": 0}
    claimed = _frames_claim(frame_ids=frame_ids, batch_max=batch_max)
    counts["claimed"] = len(claimed)
    if not claimed:
        logger.info("frames %s: nothing to claim (already processed or in progress)", frame_ids)
        return counts
    pending = set(claimed)
    try:
        frames = list(
            Frame.objects.filter(pk__in=claimed).select_related("neonate", "unit").order_by("received_at", "pk")
        )
        pending = {f.pk for f in frames}
        max_attempts = settings.NEOPAIN_FRAME_MAX_ATTEMPTS
        over = [f.pk for f in frames if f.attempts > max_attempts]
        if over:
            _frames_fail(frame_ids=over, reason=f"gave up after {max_attempts} attempts")
            counts["failed"] += len(over)
            pending -= set(over)
            frames = [f for f in frames if f.pk not in over]
        groups: dict[tuple, list] = {}
        models: dict[int, tuple] = {}
        for frame in frames:
            if frame.unit_id not in models:
                models[frame.unit_id] = (
                    active_model_for_unit(unit=frame.unit),
                    active_model_for_unit(unit=frame.unit, kind=ModelVersion.Kind.DETECTOR),
                )
            classifier, detector = models[frame.unit_id]
            if classifier is None:
                _frames_release(frame_ids=[frame.pk], reason=WAITING_FOR_MODEL)
                pending.discard(frame.pk)
                counts["waiting"] += 1
                continue
            groups.setdefault((classifier.pk, detector.pk if detector else None), []).append(frame)
        for (_, _), group in groups.items():
            classifier, detector = models[group[0].unit_id]
            for start in range(0, len(group), batch_max):
                batch = group[start : start + batch_max]
                _frames_score_batch(frames=batch, classifier=classifier, detector=detector, counts=counts)
                pending -= {f.pk for f in batch}
    except SoftTimeLimitExceeded:
        _frames_fail(frame_ids=sorted(pending), reason="time limit exceeded")
        counts["failed"] += len(pending)
        return counts
    except (DatabaseError, OSError) as exc:
        try:
            _frames_release(frame_ids=sorted(pending), reason=f"retrying after {type(exc).__name__}")
        except DatabaseError:
            pass  # the sweeper re-queues them
        raise FramesRetry(f"{type(exc).__name__}: {exc}") from exc
    except Exception:
        _frames_fail(frame_ids=sorted(pending), reason="internal error while scoring (see worker log)")
        raise
    return counts


def _frames_score_batch(*, frames: list, classifier: ModelVersion, detector: ModelVersion | None, counts: dict) -> None:
    """Run one batch through the pipeline and record its outcomes (:func:`predictions_record`)."""
    import time

    from inference.bundle import BundleError

    images: list[bytes] = []
    readable: list = []
    for frame in frames:
        try:
            with frame.image.open("rb") as handle:
                images.append(handle.read())
            readable.append(frame)
        except FileNotFoundError:
            _frames_fail(frame_ids=[frame.pk], reason="stored image file is missing")
            counts["failed"] += 1
    if not readable:
        return
    try:
        pipeline, detector_name = _pipeline_for(classifier=classifier, detector=detector)
    except (BundleError, FileNotFoundError) as exc:
        _frames_fail(frame_ids=[f.pk for f in readable], reason=f"model {classifier.label} cannot be used: {exc}")
        counts["failed"] += len(readable)
        return
    started = time.perf_counter()
    outcomes = pipeline.run_batch(images)
    logger.info(
        "scored %d frames with %s in %.0f ms", len(readable), classifier.label, (time.perf_counter() - started) * 1000
    )
    for result in predictions_record(
        frames=readable,
        outcomes=outcomes,
        classifier=classifier,
        detector=detector,
        detector_name=detector_name,
        pipeline=pipeline,
    ):
        counts[result] = counts.get(result, 0) + 1


def _jpeg_bytes(image) -> bytes:
    """The crop and its Grad-CAM overlay are display copies for the nurse: JPEG (quality 90) encodes a
    224x224 image in ~0.5 ms and ~15 KB, PNG in 9-35 ms and ~75 KB (2 cores; scripts/bench_worker.py).
    Training never reads them: the training set is cut again from the original frame."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _saliency_image(*, pipeline, crop, cam=None) -> bytes | None:
    """Grad-CAM overlay for the nurse (``cam``: the pipeline's map); a failure costs the overlay, never the verdict.

    ``None`` as well when nothing on the face raised the pain score (the map is zero everywhere): a
    uniformly tinted copy of the crop captioned "where the model looked" would tell the nurse nothing.
    """
    try:
        from inference.saliency import gradcam_map, overlay

        if cam is None:
            cam = gradcam_map(pipeline.model, crop)
        if not float(cam.max()) > 0:
            return None
        return _jpeg_bytes(overlay(pipeline.model, crop, cam))
    except Exception as exc:
        logger.warning("saliency map failed: %s: %s", type(exc).__name__, exc)
        return None


def prediction_route(*, confidence: float, threshold: float, is_bootstrap: bool) -> str:
    """Automatic verdict at or above the unit's threshold (paper), else a nurse case.

    The bootstrap model is a facial-grimace proxy never trained on neonates: it may rank cases for
    nurses but never decides alone, so nothing it says raises an alert or closes a case unseen.
    """
    if is_bootstrap:
        return Prediction.Route.NURSE
    return Prediction.Route.AUTO if confidence >= threshold else Prediction.Route.NURSE


def _prediction_build(
    *, frame, outcome, classifier: ModelVersion, detector: ModelVersion | None, detector_name: str, pipeline, unit_policy, now
):
    """An unsaved :class:`Prediction` for an ``ok`` outcome (crop and Grad-CAM files stored) and its case, if routed to a nurse.

    Returns ``(prediction, case_or_None)``; the caller writes both (and the frame's state) in a transaction
    and deletes the files with :func:`_prediction_files_delete` if it cannot.
    """
    import random

    from django.conf import settings
    from django.core.files.base import ContentFile

    threshold = float(unit_policy.threshold)
    confidence = float(outcome.confidence)
    routed_to = prediction_route(confidence=confidence, threshold=threshold, is_bootstrap=classifier.is_bootstrap)
    x, y, w, h = (int(v) for v in outcome.box)
    timings = {k: round(float(v), 3) for k, v in (outcome.timings_ms or {}).items()}
    timings["queue_wait"] = round((now - frame.received_at).total_seconds() * 1000, 1)
    saliency = None
    if (
        routed_to == Prediction.Route.NURSE
        and settings.NEOPAIN_SALIENCY
        and outcome.crop is not None
        and pipeline is not None
    ):
        saliency = _saliency_image(pipeline=pipeline, crop=outcome.crop, cam=getattr(outcome, "saliency_map", None))
    prediction = Prediction(
        frame=frame,
        model_version=classifier,
        detector_version=detector,
        detector_name=detector_name[:40],
        p_pain=float(outcome.p_pain),
        label=outcome.label,
        confidence=confidence,
        threshold=threshold,
        routed_to=routed_to,
        weights_sha256=outcome.weights_sha256 or classifier.sha256,
        frame_sha256=outcome.frame_sha256 or frame.sha256,
        box_x=x,
        box_y=y,
        box_w=w,
        box_h=h,
        timings_ms=timings,
        created_at=now,
    )
    try:
        if outcome.crop is not None:
            # The GPU pipeline hands the crop over already encoded (nvJPEG): no CPU encode per frame.
            crop_jpeg = getattr(outcome, "crop_jpeg", None) or _jpeg_bytes(outcome.crop)
            prediction.crop.save("crop.jpg", ContentFile(crop_jpeg), save=False)
        if saliency:
            prediction.saliency.save("saliency.jpg", ContentFile(saliency), save=False)
    except BaseException:
        _prediction_files_delete(prediction)
        raise
    case = None
    if routed_to == Prediction.Route.NURSE:
        double = unit_policy.double_scoring_share > 0 and random.random() < unit_policy.double_scoring_share
        case = TriageCase(
            prediction=prediction,
            unit_id=frame.unit_id,
            neonate_id=frame.neonate_id,
            confidence=confidence,
            created_at=now,
            assessments_required=2 if double else 1,
        )
    return prediction, case


def _prediction_files_delete(prediction) -> None:
    for field in (prediction.crop, prediction.saliency):
        if field.name:
            field.storage.delete(field.name)


def _prediction_outcome_check(*, frame, outcome, now) -> str | None:
    """Record a frame whose outcome is not a prediction (hash mismatch, no face, unreadable); its result or ``None``."""
    if outcome.frame_sha256 and outcome.frame_sha256 != frame.sha256:
        _frames_fail(frame_ids=[frame.pk], reason="stored image does not match its upload hash")
        return "failed"
    if outcome.status != "ok":
        status = Frame.Status.NO_FACE if outcome.status == "no_face" else Frame.Status.FAILED
        reason = outcome.reason or ("no face found" if status == Frame.Status.NO_FACE else "unreadable image")
        Frame.objects.filter(pk=frame.pk, status=Frame.Status.PROCESSING).update(
            status=status, reason=reason[:1000], status_changed_at=now
        )
        return "no_face" if status == Frame.Status.NO_FACE else "failed"
    return None


def _prediction_logged(prediction) -> None:
    logger.info(
        "frame %s: %s p_pain=%.3f conf=%.3f threshold=%.2f -> %s",
        prediction.frame_id,
        prediction.label,
        prediction.p_pain,
        prediction.confidence,
        prediction.threshold,
        prediction.routed_to,
    )


def prediction_record(
    *,
    frame,
    outcome,
    classifier: ModelVersion,
    detector: ModelVersion | None,
    detector_name: str,
    pipeline=None,
    unit_policy=None,
) -> str:
    """Store one pipeline outcome: the prediction, its routing (case or automatic verdict) and the frame's state.

    Returns ``done``, ``no_face``, ``failed`` or ``duplicate`` (a prediction for this frame and
    model already exists: a redelivered message). ``unit_policy``: the unit's settings, if the
    caller has them already.
    """
    from django.db import IntegrityError

    now = timezone.now()
    result = _prediction_outcome_check(frame=frame, outcome=outcome, now=now)
    if result is not None:
        return result
    prediction, case = _prediction_build(
        frame=frame,
        outcome=outcome,
        classifier=classifier,
        detector=detector,
        detector_name=detector_name,
        pipeline=pipeline,
        unit_policy=unit_policy or unit_settings_get(unit=frame.unit),
        now=now,
    )
    try:
        with transaction.atomic():
            prediction.save()
            if case is not None:
                case.prediction = prediction
                case.save(force_insert=True)
            elif prediction.label == Prediction.Label.PAIN:
                alert_raise(neonate=frame.neonate, source=Alert.Source.AUTO, prediction=prediction, at=now)
            Frame.objects.filter(pk=frame.pk).update(status=Frame.Status.DONE, reason="", status_changed_at=now)
    except IntegrityError:
        _prediction_files_delete(prediction)
        if Prediction.objects.filter(frame=frame, model_version=classifier).exists():
            Frame.objects.filter(pk=frame.pk, status=Frame.Status.PROCESSING).update(
                status=Frame.Status.DONE, reason="", status_changed_at=now
            )
            logger.info("frame %s already has a prediction from %s; duplicate ignored", frame.pk, classifier.label)
            return "duplicate"
        raise
    except BaseException:
        # The row was not written (database gone, time limit): no orphan crop or saliency file.
        _prediction_files_delete(prediction)
        raise
    _prediction_logged(prediction)
    return "done"


def predictions_record(
    *, frames: list, outcomes: list, classifier: ModelVersion, detector: ModelVersion | None, detector_name: str, pipeline=None
) -> list[str]:
    """:func:`prediction_record` for a whole batch, with the same results, in one transaction.

    The predictions and cases of the batch are inserted with one statement each and the frames
    marked done with one UPDATE (scripts/bench_worker.py: per-frame transactions were a fifth of
    the worker's time outside the models). If the batch cannot be written as a whole (a redelivered
    message's duplicate prediction, say), nothing of it is kept and every frame is recorded on its
    own, exactly as :func:`prediction_record` does.
    """
    from django.db import IntegrityError

    now = timezone.now()
    scoring = {"classifier": classifier, "detector": detector, "detector_name": detector_name, "pipeline": pipeline}
    results: list[str | None] = [None] * len(frames)
    policies: dict[int, object] = {}
    built: list[tuple[int, object, object]] = []
    try:
        for index, (frame, outcome) in enumerate(zip(frames, outcomes)):
            results[index] = _prediction_outcome_check(frame=frame, outcome=outcome, now=now)
            if results[index] is not None:
                continue
            if frame.unit_id not in policies:
                policies[frame.unit_id] = unit_settings_get(unit=frame.unit)
            prediction, case = _prediction_build(
                frame=frame, outcome=outcome, unit_policy=policies[frame.unit_id], now=now, **scoring
            )
            built.append((index, prediction, case))
        if built:
            with transaction.atomic():
                predictions = [prediction for _, prediction, _ in built]
                Prediction.objects.bulk_create(predictions)
                if any(p.pk is None for p in predictions):  # a backend that cannot return ids
                    raise IntegrityError("bulk insert returned no primary keys")
                cases = []
                for index, prediction, case in built:
                    if case is not None:
                        case.prediction = prediction
                        cases.append(case)
                    elif prediction.label == Prediction.Label.PAIN:
                        frame = frames[index]
                        alert_raise(neonate=frame.neonate, source=Alert.Source.AUTO, prediction=prediction, at=now)
                if cases:
                    TriageCase.objects.bulk_create(cases)
                Frame.objects.filter(pk__in=[frames[index].pk for index, _, _ in built]).update(
                    status=Frame.Status.DONE, reason="", status_changed_at=now
                )
    except IntegrityError:
        for _, prediction, _ in built:
            _prediction_files_delete(prediction)
            prediction.pk = None
        logger.info("batch of %d predictions not written as a whole; recording frame by frame", len(built))
        for index, _, _ in built:
            results[index] = prediction_record(
                frame=frames[index], outcome=outcomes[index], unit_policy=policies.get(frames[index].unit_id), **scoring
            )
        return [str(result) for result in results]
    except BaseException:
        # Nothing was written (database gone, time limit): no orphan crop or saliency file.
        for _, prediction, _ in built:
            _prediction_files_delete(prediction)
        raise
    for index, prediction, _ in built:
        results[index] = "done"
        _prediction_logged(prediction)
    return [str(result) for result in results]


# --- Sweeper -----------------------------------------------------------------------------


def frames_sweep(
    *, stuck_seconds: int | None = None, limit: int = 1000, queued_reason_prefix: str | None = None
) -> dict[str, int]:
    """Re-queue frames (and clips) stuck in ``queued``/``processing`` and publish them again.

    ``queued`` past the limit usually means the broker was down at upload time; ``processing``
    past it means a worker died. Duplicate messages are harmless (claims are atomic).
    """
    from django.conf import settings

    stuck_seconds = settings.NEOPAIN_STUCK_FRAME_SECONDS if stuck_seconds is None else stuck_seconds
    cutoff = timezone.now() - timedelta(seconds=stuck_seconds)
    stuck = Frame.objects.filter(
        status__in=[Frame.Status.QUEUED, Frame.Status.PROCESSING], status_changed_at__lte=cutoff
    )
    if queued_reason_prefix is not None:
        stuck = Frame.objects.filter(status=Frame.Status.QUEUED, reason__startswith=queued_reason_prefix)
    ids = list(stuck.order_by("status_changed_at").values_list("pk", flat=True)[:limit])
    if ids:
        with transaction.atomic():
            Frame.objects.filter(pk__in=ids, status=Frame.Status.PROCESSING).update(
                status=Frame.Status.QUEUED, reason="re-queued after a worker stalled", status_changed_at=timezone.now()
            )
    clip_ids = (
        list(
            Clip.objects.filter(status=Clip.Status.QUEUED, received_at__lte=cutoff).values_list("pk", flat=True)[:limit]
        )
        if queued_reason_prefix is None
        else []
    )
    published = frames_enqueue(frame_ids=ids) if ids else 0
    clips_published = clips_enqueue(clip_ids=clip_ids) if clip_ids else 0
    if ids or clip_ids:
        logger.info("sweeper: %d stuck frames (%d published), %d clips", len(ids), published, len(clip_ids))
    return {"frames": len(ids), "published": published, "clips": len(clip_ids), "clips_published": clips_published}


# --- Neonates ----------------------------------------------------------------------------


@transaction.atomic
def neonate_create(
    *,
    unit: Unit,
    mrn: str,
    bed: str = "",
    gestational_age_weeks=None,
    actor: User | None = None,
    request=None,
) -> Neonate:
    """Register a neonate in a unit (MRN unique hospital-wide); audited."""
    from django.core.exceptions import ValidationError

    mrn = (mrn or "").strip()
    if Neonate.objects.filter(mrn=mrn).exists():
        raise ValidationError({"mrn": ["A neonate with this MRN is already registered."]})
    neonate = Neonate(unit=unit, mrn=mrn, bed=(bed or "").strip(), gestational_age_weeks=gestational_age_weeks)
    neonate.full_clean(validate_unique=False)
    neonate.save()
    audit_record(
        action="neonate.created",
        actor=actor,
        unit=unit,
        obj=neonate,
        after={"mrn": mrn, "bed": neonate.bed},
        request=request,
    )
    return neonate
