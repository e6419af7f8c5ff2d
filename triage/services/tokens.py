"""API tokens: made (the key shown once), rotated, revoked, and checked on every API request.

Lifetimes come from the owner's unit settings (``device_token_days``, ``person_token_hours``);
every change is audited with the token's prefix, never its key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from triage.models import TOKEN_PREFIX_LENGTH, ApiToken, Role, UnitSettings, User, token_digest
from triage.services.audit import audit_record

# ``last_used_at`` is written at most this often per token: one UPDATE a minute, not one a frame.
TOKEN_USE_RESOLUTION = timedelta(seconds=60)
DEFAULT_DEVICE_TOKEN_DAYS = UnitSettings._meta.get_field("device_token_days").default
DEFAULT_PERSON_TOKEN_HOURS = UnitSettings._meta.get_field("person_token_hours").default


class TokenRefused(Exception):
    """The presented key does not authenticate; ``str()`` says why, for the 401's ``detail``."""


@dataclass(frozen=True)
class IssuedToken:
    """A new token row and its key (the only time the key exists outside the caller's hands)."""

    token: ApiToken
    key: str


def api_token_kind(user: User) -> str:
    return ApiToken.Kind.DEVICE if user.role == Role.DEVICE else ApiToken.Kind.PERSON


def api_token_lifetime(*, user: User) -> timedelta:
    """How long a new token of ``user`` lives: the unit's setting, else the defaults (365 days / 12 hours)."""
    row = UnitSettings.objects.filter(unit_id=user.unit_id).first() if user.unit_id else None
    if api_token_kind(user) == ApiToken.Kind.DEVICE:
        return timedelta(days=row.device_token_days if row else DEFAULT_DEVICE_TOKEN_DAYS)
    return timedelta(hours=row.person_token_hours if row else DEFAULT_PERSON_TOKEN_HOURS)


def api_token_can_manage(*, actor, owner: User) -> bool:
    """A superuser manages any token; a unit admin those of the cameras of their own unit."""
    if actor is None or not getattr(actor, "is_authenticated", False) or not actor.is_active:
        return False
    if actor.is_superuser:
        return True
    return bool(actor.is_unit_admin and owner.role == Role.DEVICE and owner.unit_id == actor.unit_id)


def _snapshot(token: ApiToken) -> dict:
    return {
        "prefix": token.prefix,
        "user": token.user.get_username(),
        "kind": token.kind,
        "expires_at": token.expires_at.isoformat(),
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def _check_actor(actor, owner: User) -> None:
    if actor is not None and not api_token_can_manage(actor=actor, owner=owner):
        raise PermissionDenied("Only the camera's unit admin may manage its tokens.")


def _issue(*, user: User, actor, expires_at: datetime | None) -> IssuedToken:
    key = secrets.token_urlsafe(32)  # 43 characters, 256 random bits
    token = ApiToken.objects.create(
        user=user,
        kind=api_token_kind(user),
        prefix=key[:TOKEN_PREFIX_LENGTH],
        digest=token_digest(key),
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        expires_at=expires_at or timezone.now() + api_token_lifetime(user=user),
    )
    return IssuedToken(token=token, key=key)


@transaction.atomic
def api_token_create(
    *, user: User, actor=None, request=None, expires_at: datetime | None = None, actor_username: str = ""
) -> IssuedToken:
    """A new token for ``user`` beside any it has. ``actor=None`` is the system (commands, tests)."""
    _check_actor(actor, user)
    issued = _issue(user=user, actor=actor, expires_at=expires_at)
    audit_record(
        action="token.created",
        actor=actor,
        actor_username=actor_username,
        unit=user.unit,
        obj=issued.token,
        after=_snapshot(issued.token),
        request=request,
    )
    return issued


@transaction.atomic
def api_token_revoke(
    *, token: ApiToken, actor=None, request=None, reason: str = "revoked", actor_username: str = ""
) -> ApiToken:
    """End ``token`` now (a no-op on one already revoked). Its next use answers 401 "revoked"."""
    _check_actor(actor, token.user)
    token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    before = _snapshot(token)
    token.revoked_at = timezone.now()
    token.revoked_reason = reason
    token.save(update_fields=["revoked_at", "revoked_reason"])
    audit_record(
        action=f"token.{reason}",
        actor=actor,
        actor_username=actor_username,
        unit=token.user.unit,
        obj=token,
        before=before,
        after=_snapshot(token),
        request=request,
    )
    return token


@transaction.atomic
def api_token_rotate(
    *, user: User, actor=None, request=None, expires_at: datetime | None = None, actor_username: str = ""
) -> IssuedToken:
    """Revoke every live token of ``user`` (reason ``rotated``) and issue one new key."""
    _check_actor(actor, user)
    for old in ApiToken.objects.filter(user=user, revoked_at__isnull=True).select_related("user"):
        api_token_revoke(token=old, actor=actor, request=request, reason="rotated", actor_username=actor_username)
    return api_token_create(
        user=user, actor=actor, request=request, expires_at=expires_at, actor_username=actor_username
    )


def api_token_authenticate(*, key: str) -> tuple[User, ApiToken]:
    """The user a key belongs to, with the camera row read in the same query; ``TokenRefused`` otherwise.

    Every device request checks the camera row (``permissions.user_is_device``): joined here it costs
    no second round trip. ``last_used_at`` is refreshed at most once a minute.
    """
    if len(key) < 20:
        raise TokenRefused("Invalid token: no such API token.")
    token = ApiToken.objects.select_related("user", "user__device").filter(prefix=key[:TOKEN_PREFIX_LENGTH]).first()
    if token is None or not token.matches(key):
        raise TokenRefused("Invalid token: no such API token.")
    now = timezone.now()
    if token.revoked_at is not None:
        how = "replaced by a newer token" if token.revoked_reason == "rotated" else "revoked"
        raise TokenRefused(f"Token {how} at {token.revoked_at:%Y-%m-%d %H:%M} UTC. Ask your unit admin for a new one.")
    if token.expires_at <= now:
        raise TokenRefused(
            f"Token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC. Ask your unit admin for a new one."
        )
    if not token.user.is_active:
        raise TokenRefused("User inactive or deleted.")
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_USE_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token.user, token
