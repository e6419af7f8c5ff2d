"""Request-level safety nets: idle logoff, a 503 when the database is unreachable, no NUL characters,
a cap on request bodies, and an audit row for every read of patient data."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth import logout
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from rest_framework import exceptions as drf_exceptions

logger = logging.getLogger(__name__)


class IdleSessionTimeoutMiddleware:
    """Log a browser session out after NEOPAIN_IDLE_TIMEOUT_SECONDS without a request (shared workstations)."""

    KEY = "neopain_last_seen"

    def __init__(self, get_response):
        self.get_response = get_response

    @staticmethod
    def _authenticates_by_token(request) -> bool:
        """True only for a valid API token of an active user: any other ``Authorization`` header
        (``Foo bar``, a wrong token) leaves the session, and its idle clock, in charge."""
        if not request.META.get("HTTP_AUTHORIZATION"):
            return False
        from triage.auth import TokenAuthentication

        try:
            return TokenAuthentication().authenticate(request) is not None
        except drf_exceptions.AuthenticationFailed:
            return False

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and hasattr(request, "session")
            and not self._authenticates_by_token(request)
        ):
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


# The upload endpoints have their own, larger caps (NEOPAIN_MAX_UPLOAD_BYTES / NEOPAIN_MAX_CLIP_BYTES)
# checked while streaming; the multipart envelope around the file gets this much on top.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class RequestBodyCapMiddleware:
    """413 for a declared request body over its cap, before anything reads or spools it.

    Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` does not count the file parts of a multipart body, so a
    300 MB "file" sent to an acknowledge endpoint would be spooled to disk. Bodies without a
    ``Content-Length`` are read by Django as empty, so the declared length is the whole story.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._upload_caps: dict[str, int] | None = None

    def _cap_for(self, path: str) -> int:
        if self._upload_caps is None:
            self._upload_caps = {
                reverse("api-frames"): settings.NEOPAIN_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES,
                reverse("api-clips"): settings.NEOPAIN_MAX_CLIP_BYTES + MULTIPART_OVERHEAD_BYTES,
            }
        return self._upload_caps.get(path, settings.NEOPAIN_MAX_REQUEST_BYTES)

    def __call__(self, request):
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            declared = int(raw)
        except ValueError:
            return JsonResponse({"detail": "Malformed Content-Length header."}, status=400)
        cap = self._cap_for(request.path_info)
        if declared > cap:
            return JsonResponse(
                {"detail": f"Request body too large: {declared} bytes, the limit here is {cap} bytes."}, status=413
            )
        return self.get_response(request)


# Routes that show patient data (names of the URL patterns), and the model their ``pk`` names.
# Image views and the CSV export audit themselves (one row per image or export).
PHI_READ_ROUTES: dict[str, str] = {
    "api-neonates": "",
    "api-frames": "",
    "api-frame-detail": "triage.Frame",
    "api-clip-detail": "triage.Clip",
    "api-alerts": "",
    "api-case-list": "",
    "api-case-detail": "triage.TriageCase",
    "dashboard": "",
    "case_detail": "triage.TriageCase",
    "alerts": "",
    "neonates": "",
    "neonate_timeline": "triage.Neonate",
    "unit_babies": "",
    # FHIR (ehr app): observations name the patient by MRN.
    "fhir-observation-search": "",
    "fhir-observation-read": "",
    "fhir-patient-read": "triage.Neonate",
    "fhir-flag-read": "",
    "fhir-export-file": "",
}


class PhiReadAuditMiddleware:
    """One audit row (``phi.read``: who, which route and object, when, from where) per successful
    read of a page or API route that shows patient data: one row per request, never per object."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method in ("GET", "HEAD") and response.status_code == 200:
            match = getattr(request, "resolver_match", None)
            user = getattr(request, "user", None)  # DRF puts the token's user here too
            if match is not None and match.url_name in PHI_READ_ROUTES and user is not None and user.is_authenticated:
                self._record(request, user, match)
        return response

    @staticmethod
    def _record(request, user, match) -> None:
        from triage.models import Unit
        from triage.services import audit_record

        object_type = PHI_READ_ROUTES[match.url_name]
        audit_record(
            action="phi.read",
            actor=user,
            # The unit by id: loading the user's Unit row would cost every read a second query.
            unit=Unit(pk=user.unit_id) if user.unit_id else None,
            object_type=object_type,
            object_id=match.kwargs.get("pk", "") if object_type else "",
            after={"route": match.url_name, "query": request.META.get("QUERY_STRING", "")[:500]},
            request=request,
        )
