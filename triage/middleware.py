"""Request-level safety nets: idle logoff, a 503 when the database is unreachable, no NUL characters."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth import logout
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.shortcuts import redirect

logger = logging.getLogger(__name__)


class IdleSessionTimeoutMiddleware:
    """Log a browser session out after NEOPAIN_IDLE_TIMEOUT_SECONDS without a request (shared workstations)."""

    KEY = "neopain_last_seen"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session") and not request.META.get("HTTP_AUTHORIZATION"):
            now = time.time()
            last = request.session.get(self.KEY)
            if last is not None and now - float(last) > settings.NEOPAIN_IDLE_TIMEOUT_SECONDS:
                logout(request)
                if request.path.startswith("/api/"):
                    return JsonResponse({"detail": "Session expired after inactivity. Sign in again."}, status=401)
                return redirect(f"/login/?expired=1&next={request.path}")
            # Live-refresh polling must not keep an unattended screen signed in.
            if request.headers.get("HX-Trigger-Name") != "poll" and request.GET.get("poll") != "1":
                request.session[self.KEY] = now
        return self.get_response(request)


class NullCharacterMiddleware:
    """Answer 400 to a NUL character in the path, query string or cookies.

    PostgreSQL text cannot hold NUL: a ``?neonate=%00`` or a forged session cookie would reach a
    query and end as a 500. Request bodies are left to the serializers and forms, which refuse NUL.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        parts = [request.path, *request.GET.keys(), *request.GET.values(), *request.COOKIES.keys(),
                 *request.COOKIES.values()]
        if any("\x00" in part for part in parts):
            return JsonResponse({"detail": "Malformed request: NUL character in the URL or cookies."}, status=400)
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Turn a lost database connection into a 503 with a generic body, never a 500 with details."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            return self.get_response(request)
        except (OperationalError, InterfaceError) as exc:
            return self._unavailable(exc)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            return self._unavailable(exception)
        return None

    @staticmethod
    def _unavailable(exc):
        logger.error("database unavailable: %s", type(exc).__name__)
        response = JsonResponse({"detail": "Service temporarily unavailable. Try again shortly."}, status=503)
        response["Retry-After"] = "5"
        return response
