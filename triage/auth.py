"""Authentication: login with audit and throttling (failed logins are logged, never the password, and
rate limited), and the API's token authentication.

The sign-in throttle keys on the client's real address (``triage.addresses``, behind configured
proxies) and user name: a stranger cannot lock a nurse out from the nurse's own workstation. After
``NEOPAIN_LOGIN_FAILURE_LIMIT`` failures that pair waits ``NEOPAIN_LOGIN_BACKOFF_SECONDS``, doubling
with every further failure up to the window: never a permanent lockout, the right password works
once the wait is over. One address failing for many user names (password spraying) waits too, after
``NEOPAIN_LOGIN_ADDRESS_FAILURE_LIMIT`` failures. One user name failing from any number of addresses
is locked out for ``NEOPAIN_LOGIN_ACCOUNT_LOCKOUT_SECONDS`` after
``NEOPAIN_LOGIN_ACCOUNT_FAILURE_LIMIT`` failures (a distributed guess at one account). Every lock
that begins is audited as ``login.locked_out``; a refused attempt as ``login.throttled``.

API tokens (``ApiToken``, hashed, expiring, revocable) are checked by ``TokenAuthentication``; an
expired, revoked or unknown key answers 401 with a ``detail`` that says which.
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.shortcuts import render
from rest_framework import authentication, exceptions

from triage.addresses import client_ip
from triage.services import TokenRefused, api_token_authenticate, audit_record

logger = logging.getLogger("neopain.auth")


def _failure_key(ip: str | None, username: str) -> str:
    return f"login-fail:{ip or '-'}:{(username or '').lower()[:150]}"


def _address_key(ip: str | None) -> str:
    return f"login-fail-addr:{ip or '-'}"


def _account_key(username: str) -> str:
    return f"login-fail-acct:{(username or '').lower()[:150]}"


def _lock_key(counter_key: str) -> str:
    return f"{counter_key}:until"


def _now() -> float:
    """The clock of the backoff (a function of its own so tests move it without moving the cache's)."""
    return time.time()


def _cache_unavailable(exc: Exception) -> None:
    # The counter lives in the cache (Redis in production). Without it nurses must still sign in:
    # the throttle fails open, and failed logins are still logged and audited.
    logger.warning("login throttle unavailable (%s: %s): not throttling", type(exc).__name__, exc)


def login_wait_seconds(*, ip: str | None, username: str) -> int:
    """Seconds this (address, user name) must still wait before trying a password; 0 when it may."""
    try:
        keys = [_lock_key(k) for k in (_failure_key(ip, username), _address_key(ip), _account_key(username))]
        until = max([float(v or 0) for v in cache.get_many(keys).values()], default=0.0)
    except Exception as exc:  # redis-py, the database cache ... each raise their own connection errors
        _cache_unavailable(exc)
        return 0
    return max(0, math.ceil(until - _now()))


def login_is_throttled(*, ip: str | None, username: str) -> bool:
    return login_wait_seconds(ip=ip, username=username) > 0


def _count_failure(counter_key: str, limit: int, *, fixed_wait: int | None = None) -> int:
    """One more failure on ``counter_key``; at or over ``limit``, a wait (seconds, 0 when none begins).

    The wait doubles per failure from the backoff, or is ``fixed_wait`` (the account lockout, whose
    count then starts again)."""
    window = settings.NEOPAIN_LOGIN_FAILURE_WINDOW_SECONDS
    cache.add(counter_key, 0, timeout=window)
    try:
        failures = cache.incr(counter_key)
    except ValueError:
        failures = 1
        cache.set(counter_key, failures, timeout=window)
    if failures < limit:
        return 0
    if fixed_wait is not None:
        wait = fixed_wait
        cache.delete(counter_key)
    else:
        wait = min(settings.NEOPAIN_LOGIN_BACKOFF_SECONDS * 2 ** min(failures - limit, 20), window)
    cache.set(_lock_key(counter_key), _now() + wait, timeout=wait + 1)
    return wait


def _too_many_attempts(request, *, username: str, wait: int):
    """The 429 page: how long to wait, and that the right password works again afterwards."""
    response = render(
        request,
        "registration/locked.html",
        {"wait_seconds": wait, "wait_minutes": math.ceil(wait / 60), "username": username},
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response


class NeoPainLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        wait = login_wait_seconds(ip=client_ip(request), username=username)
        if wait:
            audit_record(action="login.throttled", request=request, actor_username=username[:150])
            return _too_many_attempts(request, username=username[:150], wait=wait)
        return super().post(request, *args, **kwargs)


class NeoPainPasswordChangeView(auth_views.PasswordChangeView):
    """Self-service password change for every signed-in person (nurses are not Django staff).

    Django's form checks the current password and runs ``AUTH_PASSWORD_VALIDATORS``; the change is
    audited and the session kept (other sessions of the account end, their hash is stale)."""

    template_name = "registration/password_change.html"

    def form_valid(self, form):
        response = super().form_valid(form)
        audit_record(action="password.changed", actor=self.request.user, obj=self.request.user, request=self.request)
        return response


@receiver(user_login_failed)
def on_login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))[:150]
    ip = client_ip(request)
    locks = {}
    try:
        locks["address+user"] = _count_failure(_failure_key(ip, username), settings.NEOPAIN_LOGIN_FAILURE_LIMIT)
        locks["address"] = _count_failure(_address_key(ip), settings.NEOPAIN_LOGIN_ADDRESS_FAILURE_LIMIT)
        locks["account"] = _count_failure(
            _account_key(username),
            settings.NEOPAIN_LOGIN_ACCOUNT_FAILURE_LIMIT,
            fixed_wait=settings.NEOPAIN_LOGIN_ACCOUNT_LOCKOUT_SECONDS,
        )
    except Exception as exc:
        _cache_unavailable(exc)
    logger.warning("failed login for username=%r from %s", username, ip)
    audit_record(action="login.failed", request=request, actor_username=username)
    begun = {scope: wait for scope, wait in locks.items() if wait}
    if begun:
        logger.warning("sign-in locked for username=%r from %s: %s", username, ip, begun)
        audit_record(
            action="login.locked_out",
            request=request,
            actor_username=username,
            unit=_unit_of(username),
            after={"scopes": sorted(begun), "seconds": max(begun.values())},
        )


def _unit_of(username: str):
    """The unit of the named account, so its admin sees the lockout in the unit's audit log."""
    from triage.models import User

    user = User.objects.filter(username__iexact=username).select_related("unit").first() if username else None
    return user.unit if user is not None else None


@receiver(user_logged_in)
def on_logged_in(sender, request, user, **kwargs):
    key = _failure_key(client_ip(request), user.get_username())
    try:
        cache.delete_many([key, _lock_key(key)])
    except Exception as exc:
        _cache_unavailable(exc)
    audit_record(action="login", actor=user, request=request)


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>`` against the hashed ``ApiToken`` rows (``triage.services.tokens``).

    The token, its user and the user's camera are read in one query; an unknown, expired or revoked
    key, or one of an inactive user, answers 401 with a ``detail`` saying which.
    """

    def authenticate_credentials(self, key):
        try:
            return api_token_authenticate(key=key)
        except TokenRefused as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
