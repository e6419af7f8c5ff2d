"""Reads for the triage domain: return querysets or plain data, never write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from triage.models import Device, Frame, ModelVersion, Neonate, Unit


def active_model_for_unit(*, unit: Unit | None, kind: str = ModelVersion.Kind.CLASSIFIER) -> ModelVersion | None:
    """The unit's own active model if it has one, else the global active model."""
    qs = ModelVersion.objects.filter(kind=kind, status=ModelVersion.Status.ACTIVE)
    if unit is not None:
        qs = qs.filter(Q(unit=unit) | Q(unit__isnull=True))
    else:
        qs = qs.filter(unit__isnull=True)
    # Unit-specific first (NULLs sort last on PostgreSQL for DESC? be explicit).
    rows = list(qs)
    rows.sort(key=lambda m: m.unit_id is None)
    return rows[0] if rows else None


def _user_unit_scope(user):
    """``None`` means every unit (superuser); otherwise the user's unit id (may be None: sees nothing)."""
    if user.is_superuser:
        return None
    return user.unit_id


def units_visible(*, user):
    """Units the user may see: her own; ML engineers and superusers see all."""
    from triage.models import Role

    qs = Unit.objects.select_related("settings").order_by("name")
    if user.is_superuser or user.role == Role.ML_ENGINEER:
        return qs
    if user.unit_id is None:
        return qs.none()
    return qs.filter(pk=user.unit_id)


def neonates_visible(*, user, include_inactive: bool = False):
    """Neonates of the user's unit (all units for a superuser)."""
    from triage.models import Neonate

    qs = Neonate.objects.select_related("unit")
    if not include_inactive:
        qs = qs.filter(active=True)
    scope = _user_unit_scope(user)
    if scope is None and user.is_superuser:
        return qs
    return qs.filter(unit_id=scope) if scope else qs.none()


def neonate_for_upload(*, user, mrn: str):
    """The active neonate with this MRN in the uploader's unit, or None (another unit's MRN is None too)."""
    from triage.models import Neonate

    # MRNs are unique, so no ORDER BY; the upload needs only the neonate's own columns (unit_id).
    qs = Neonate.objects.filter(mrn=mrn, active=True).order_by()
    if not user.is_superuser:
        if user.unit_id is None:
            return None
        qs = qs.filter(unit_id=user.unit_id)
    rows = list(qs[:1])
    return rows[0] if rows else None


def frames_visible(*, user, neonate_mrn: str | None = None):
    """Frames the user may read, newest first; a device sees only its own uploads."""
    from django.db.models import Prefetch

    from triage.models import Frame, Prediction, Role

    qs = Frame.objects.select_related("neonate").prefetch_related(
        Prefetch(
            "predictions",
            queryset=Prediction.objects.select_related("model_version", "case").order_by("-created_at"),
        )
    )
    if not user.is_superuser:
        if user.unit_id is None:
            return qs.none()
        qs = qs.filter(unit_id=user.unit_id)
        if user.role == Role.DEVICE:
            qs = qs.filter(device__user=user)
    if neonate_mrn:
        qs = qs.filter(neonate__mrn=neonate_mrn)
    return qs.order_by("-received_at", "-pk")


def frame_latest_prediction(*, frame):
    """The frame's newest prediction (uses a prefetched list when there is one)."""
    predictions = list(frame.predictions.all())
    if not predictions:
        return None
    return max(predictions, key=lambda p: (p.created_at, p.pk))


def clips_visible(*, user):
    from triage.models import Clip, Role

    qs = Clip.objects.select_related("neonate")
    if user.is_superuser:
        return qs
    if user.unit_id is None:
        return qs.none()
    qs = qs.filter(unit_id=user.unit_id)
    if user.role == Role.DEVICE:
        qs = qs.filter(uploaded_by=user)
    return qs


def alerts_open(*, user):
    """Unacknowledged alerts of the user's unit, newest first."""
    from triage.models import Alert

    qs = Alert.objects.select_related("neonate", "prediction").filter(acknowledged_at__isnull=True)
    if user.is_superuser:
        return qs.order_by("-created_at")
    if user.unit_id is None:
        return qs.none()
    return qs.filter(unit_id=user.unit_id).order_by("-created_at")


def alert_escalation_receiver(*, user) -> bool:
    """Whether ``user`` receives the unit's escalated alerts: its charge nurses, else its unit admins.

    Mirrors :func:`triage.services.alerts.alert_escalation_recipients` (who the audit row names).
    """
    from triage.models import Role, User

    if not user.is_active or user.unit_id is None:
        return False
    if user.is_charge_nurse:
        return True
    if user.role != Role.UNIT_ADMIN:
        return False
    return not User.objects.filter(unit_id=user.unit_id, is_active=True, is_charge_nurse=True).exists()


ALERT_POLL_SECONDS = 10
"""How often every page asks for the open-alert counts (GET /api/v1/alerts/summary/)."""


@dataclass(frozen=True)
class AlertBadge:
    """The open-alert count every page shows in its top bar (and the escalation banner)."""

    open: int
    escalated: int
    newest_id: int | None
    newest_escalated_id: int | None
    for_me: bool
    """This user receives escalations (charge nurse, or unit admin of a unit without one)."""


def alert_badge(*, user) -> AlertBadge:
    """Open and escalated alerts of the user's unit: one aggregate query (two for a unit admin)."""
    from django.db.models import Count, Max

    escalated = Q(escalated_at__isnull=False)
    row = (
        alerts_open(user=user)
        .order_by()
        .aggregate(
            open=Count("pk"),
            escalated=Count("pk", filter=escalated),
            newest=Max("pk"),
            newest_escalated=Max("pk", filter=escalated),
        )
    )
    return AlertBadge(
        open=row["open"],
        escalated=row["escalated"],
        newest_id=row["newest"],
        newest_escalated_id=row["newest_escalated"],
        for_me=bool(row["escalated"]) and alert_escalation_receiver(user=user),
    )


def alert_brief(*, user, pk: int | None) -> dict | None:
    """What a browser notification may say about an alert: bed, source, time (never the MRN)."""
    if pk is None:
        return None
    row = (
        alerts_open(user=user)
        .filter(pk=pk)
        .values("pk", "neonate__bed", "source", "created_at", "escalated_at", "assessment__total")
        .first()
    )
    if row is None:
        return None
    return {
        "id": row["pk"],
        "bed": row["neonate__bed"] or "",
        "source": row["source"],
        "nips_total": row["assessment__total"],
        "created_at": row["created_at"],
        "escalated_at": row["escalated_at"],
    }


def model_versions_visible(*, user):
    """Registered models: global ones and those of the user's unit (all for ML engineers)."""
    from triage.models import Role

    qs = ModelVersion.objects.select_related("unit", "activated_by").order_by("-created_at")
    if user.is_superuser or user.role == Role.ML_ENGINEER:
        return qs
    return qs.filter(Q(unit__isnull=True) | Q(unit_id=user.unit_id))


@dataclass(frozen=True)
class CameraHealth:
    """A bedside camera as the devices page and the queue show it."""

    device: Device
    last_contact_at: datetime | None
    offline: bool

    @property
    def watching(self) -> Neonate | None:
        return self.device.neonate

    @property
    def warning(self) -> bool:
        """Offline while assigned to a neonate: that baby is not being watched."""
        return self.offline and self.device.neonate_id is not None and self.device.active


def camera_offline_minutes(*, unit: Unit) -> int:
    """The unit's silence after which a camera is offline (its settings, else the default)."""
    from triage.models import UnitSettings

    minutes = UnitSettings.objects.filter(unit=unit).values_list("device_offline_minutes", flat=True).first()
    return minutes or UnitSettings._meta.get_field("device_offline_minutes").default


def cameras_health(
    *, unit: Unit, offline_minutes: int | None = None, now: datetime | None = None
) -> list[CameraHealth]:
    """The unit's active cameras with last contact and the offline state (silent past the unit's limit).

    ``offline_minutes``: the unit's setting when the caller has read it already (saves the query).
    """
    from django.utils import timezone

    now = now or timezone.now()
    silence = timedelta(minutes=offline_minutes or camera_offline_minutes(unit=unit))
    cameras = Device.objects.filter(unit=unit, active=True).select_related("neonate").order_by("name")
    return [
        CameraHealth(
            device=camera,
            last_contact_at=camera.last_seen_at,
            offline=camera.last_seen_at is None or now - camera.last_seen_at > silence,
        )
        for camera in cameras
    ]


@dataclass(frozen=True)
class CameraTokens:
    device: Device
    tokens: list  # ApiToken rows, newest first


# Ended (expired, revoked) tokens stay listed for a while so the admin sees what a rotation replaced.
CAMERA_TOKENS_SHOWN = 10


def camera_tokens(*, unit: Unit) -> list[CameraTokens]:
    """Every camera of the unit (retired ones too: their tokens may still need revoking) with its newest tokens."""
    from triage.models import ApiToken

    cameras = list(Device.objects.filter(unit=unit).select_related("user").order_by("-active", "name"))
    by_user: dict[int, list] = {camera.user_id: [] for camera in cameras}
    for token in ApiToken.objects.filter(user_id__in=by_user).order_by("-created_at", "-pk"):
        if len(by_user[token.user_id]) < CAMERA_TOKENS_SHOWN:
            by_user[token.user_id].append(token)
    return [CameraTokens(device=camera, tokens=by_user[camera.user_id]) for camera in cameras]


def beds_without_face(*, unit: Unit, since: datetime) -> list[dict]:
    """Babies whose camera sees no face now: their newest frame since ``since`` found no face.

    One aggregate query over the frames received since ``since`` (the ``(unit, -received_at)``
    index: a few minutes of frames, not the unit's history). Each row: ``neonate_id``, ``bed``,
    ``mrn``, ``frames`` (no-face frames in the window), ``last_no_face``, ``last_face`` (or None).
    """
    from django.db.models import Count, Max, Q

    no_face = Q(status=Frame.Status.NO_FACE)
    rows = (
        Frame.objects.filter(unit=unit, received_at__gte=since, captured_at__gte=since)
        .filter(no_face | Q(status=Frame.Status.DONE))
        .values("neonate_id", "neonate__bed", "neonate__mrn")
        .annotate(
            frames=Count("pk", filter=no_face),
            last_no_face=Max("captured_at", filter=no_face),
            last_face=Max("captured_at", filter=Q(status=Frame.Status.DONE)),
        )
        .order_by("neonate__bed", "neonate__mrn")
    )
    return [
        {
            "neonate_id": row["neonate_id"],
            "bed": row["neonate__bed"] or "—",
            "mrn": row["neonate__mrn"],
            "frames": row["frames"],
            "last_no_face": row["last_no_face"],
            "last_face": row["last_face"],
        }
        for row in rows
        if row["last_no_face"] and (row["last_face"] is None or row["last_no_face"] > row["last_face"])
    ]
