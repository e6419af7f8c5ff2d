"""Authentication: login with audit and throttling (failed logins are logged, never the password, and
rate limited), and the API's token authentication."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from triage.services import audit_record, client_ip

logger = logging.getLogger("neopain.auth")


def _failure_key(ip: str | None, username: str) -> str:
    return f"login-fail:{ip or '-'}:{(username or '').lower()[:150]}"


def _cache_unavailable(exc: Exception) -> None:
    # The counter lives in the cache (Redis in production). Without it nurses must still sign in:
    # the throttle fails open, and failed logins are still logged and audited.
    logger.warning("login throttle unavailable (%s: %s): not throttling", type(exc).__name__, exc)


def login_is_throttled(*, ip: str | None, username: str) -> bool:
    try:
        return cache.get(_failure_key(ip, username), 0) >= settings.NEOPAIN_LOGIN_FAILURE_LIMIT
    except Exception as exc:  # redis-py, the database cache ... each raise their own connection errors
        _cache_unavailable(exc)
        return False


class NeoPainLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if login_is_throttled(ip=client_ip(request), username=username):
            audit_record(action="login.throttled", request=request, actor_username=username[:150])
            return HttpResponse(
                "Too many failed sign-in attempts. Wait a few minutes and try again.",
                status=429,
                content_type="text/plain",
            )
        return super().post(request, *args, **kwargs)


@receiver(user_login_failed)
def on_login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))[:150]
    ip = client_ip(request)
    key = _failure_key(ip, username)
    try:
        cache.add(key, 0, timeout=settings.NEOPAIN_LOGIN_FAILURE_WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=settings.NEOPAIN_LOGIN_FAILURE_WINDOW_SECONDS)
    except Exception as exc:
        _cache_unavailable(exc)
    logger.warning("failed login for username=%r from %s", username, ip)
    audit_record(action="login.failed", request=request, actor_username=username)


@receiver(user_logged_in)
def on_logged_in(sender, request, user, **kwargs):
    try:
        cache.delete(_failure_key(client_ip(request), user.get_username()))
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
