"""Authentication: login with audit and throttling (failed logins are logged, never the password, and
rate limited), and the API's token authentication.

The sign-in throttle keys on the client's real address (``triage.addresses``, behind configured
proxies) and user name: a stranger cannot lock a nurse out from the nurse's own workstation. After
``NEOPAIN_LOGIN_FAILURE_LIMIT`` failures that pair waits ``NEOPAIN_LOGIN_BACKOFF_SECONDS``, doubling
with every further failure up to the window: never a permanent lockout, the right password works
once the wait is over. One address failing for many user names (password spraying) waits too, after
``NEOPAIN_LOGIN_ADDRESS_FAILURE_LIMIT`` failures.
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
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from triage.addresses import client_ip
from triage.services import audit_record

logger = logging.getLogger("neopain.auth")


def _failure_key(ip: str | None, username: str) -> str:
    return f"login-fail:{ip or '-'}:{(username or '').lower()[:150]}"


def _address_key(ip: str | None) -> str:
    return f"login-fail-addr:{ip or '-'}"


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
        until = max(
            float(cache.get(_lock_key(_failure_key(ip, username))) or 0),
            float(cache.get(_lock_key(_address_key(ip))) or 0),
        )
    except Exception as exc:  # redis-py, the database cache ... each raise their own connection errors
        _cache_unavailable(exc)
        return 0
    return max(0, math.ceil(until - _now()))


def login_is_throttled(*, ip: str | None, username: str) -> bool:
    return login_wait_seconds(ip=ip, username=username) > 0


def _count_failure(counter_key: str, limit: int) -> None:
    """One more failure on ``counter_key``; at or over ``limit``, a wait that doubles per failure."""
    window = settings.NEOPAIN_LOGIN_FAILURE_WINDOW_SECONDS
    cache.add(counter_key, 0, timeout=window)
    try:
        failures = cache.incr(counter_key)
    except ValueError:
        failures = 1
        cache.set(counter_key, failures, timeout=window)
    if failures >= limit:
        wait = min(settings.NEOPAIN_LOGIN_BACKOFF_SECONDS * 2 ** min(failures - limit, 20), window)
        cache.set(_lock_key(counter_key), _now() + wait, timeout=wait + 1)


class NeoPainLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        wait = login_wait_seconds(ip=client_ip(request), username=username)
        if wait:
            audit_record(action="login.throttled", request=request, actor_username=username[:150])
            response = HttpResponse(
                f"Too many failed sign-in attempts. Try again in {wait} seconds.",
                status=429,
                content_type="text/plain",
            )
            response["Retry-After"] = str(wait)
            return response
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
    try:
        _count_failure(_failure_key(ip, username), settings.NEOPAIN_LOGIN_FAILURE_LIMIT)
        _count_failure(_address_key(ip), settings.NEOPAIN_LOGIN_ADDRESS_FAILURE_LIMIT)
    except Exception as exc:
        _cache_unavailable(exc)
    logger.warning("failed login for username=%r from %s", username, ip)
    audit_record(action="login.failed", request=request, actor_username=username)


@receiver(user_logged_in)
def on_logged_in(sender, request, user, **kwargs):
    key = _failure_key(client_ip(request), user.get_username())
    try:
        cache.delete_many([key, _lock_key(key)])
    except Exception as exc:
        _cache_unavailable(exc)
    audit_record(action="login", actor=user, request=request)


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication reading the token, its user and the user's camera in one query.

    Every device request checks the camera row (``permissions.user_is_device``): joined here it
    costs no second round trip (issue 7, ingest). A user without a camera gets ``device`` cached as
    missing, so the check asks nothing either. Same answers as DRF's class, which it extends.
    """

    def authenticate_credentials(self, key):
        model = self.get_model()
        try:
            token = model.objects.select_related("user", "user__device").get(key=key)
        except model.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)
