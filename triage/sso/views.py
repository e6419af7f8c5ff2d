"""Sign-in through the identity provider (start, callback, a refusal page with a reason) and sign-out
that also ends the provider's session (RP-initiated logout)."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from triage.services.sso import sso_refusal_record
from triage.sso.provider import ProviderUnavailable, provider_metadata, sso_enabled

logger = logging.getLogger("neopain.sso")

REFUSED_TEMPLATE = "registration/sso_refused.html"


def sso_refused_page(request, *, title: str, reason: str, status: int, seen: dict | None = None):
    return render(
        request,
        REFUSED_TEMPLATE,
        {"title": title, "reason": reason, "seen": seen or {}, "provider_name": settings.NEOPAIN_OIDC_PROVIDER_NAME},
        status=status,
    )


def _provider_unreachable(request, exc: Exception):
    logger.warning("identity provider unreachable: %s", exc)
    sso_refusal_record(
        issuer=settings.NEOPAIN_OIDC_ISSUER, code="provider_unreachable", detail=str(exc), request=request
    )
    return sso_refused_page(
        request,
        title="The sign-in service is not answering",
        reason=f"NeoPain could not reach {settings.NEOPAIN_OIDC_PROVIDER_NAME}. Try again in a minute; if it "
        "persists, call the IT service desk.",
        status=502,
    )


class SsoStartView(OIDCAuthenticationRequestView):
    """Redirect to the provider's authorization endpoint (code flow, PKCE S256, state, nonce)."""

    def __init__(self, **kwargs):
        View.__init__(self, **kwargs)  # the endpoints are read from discovery in get(), not at start-up

    def get(self, request):
        if not sso_enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider_metadata()["authorization_endpoint"]
        except ProviderUnavailable as exc:
            return _provider_unreachable(request, exc)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class SsoCallbackView(OIDCAuthenticationCallbackView):
    """The provider sends the person back here (the redirect URI to register: ``/oidc/callback/``)."""

    def get(self, request):
        if not sso_enabled():
            raise Http404("Single sign-on is not configured.")
        provider_error = request.GET.get("error")
        try:
            response = super().get(request)
        except (ProviderUnavailable, requests.RequestException) as exc:
            return _provider_unreachable(request, exc)
        except SuspiciousOperation as exc:
            # A state that is not this browser's, a nonce or signature that does not match: never a sign-in.
            logger.warning("single sign-on answer refused: %s", exc)
            sso_refusal_record(
                issuer=settings.NEOPAIN_OIDC_ISSUER, code="invalid_response", detail=str(exc), request=request
            )
            return sso_refused_page(
                request,
                title="That sign-in could not be verified",
                reason="The answer from the sign-in service did not match this browser's request. "
                "Start again from the NeoPain sign-in page.",
                status=400,
            )
        if provider_error:
            description = request.GET.get("error_description", "")[:300]
            sso_refusal_record(
                issuer=settings.NEOPAIN_OIDC_ISSUER,
                code=f"provider:{provider_error}"[:60],
                detail=description,
                request=request,
            )
            return sso_refused_page(
                request,
                title="The sign-in service did not sign you in",
                reason=f"{settings.NEOPAIN_OIDC_PROVIDER_NAME} answered “{provider_error}”"
                + (f": {description}" if description else "."),
                status=403,
            )
        refusal = getattr(request, "neopain_sso_refusal", None)
        if refusal is not None:
            return sso_refused_page(
                request, title="NeoPain cannot sign you in", reason=refusal.reason, status=403, seen=refusal.seen
            )
        return response


def provider_logout_url(request) -> str | None:
    """The provider's end-session URL for this session (OpenID Connect RP-Initiated Logout 1.0), or
    None: not signed in through the provider, or the provider has no such endpoint."""
    id_token = request.session.get("oidc_id_token")
    if not id_token or not sso_enabled():
        return None
    try:
        end_session = provider_metadata().get("end_session_endpoint")
    except ProviderUnavailable as exc:
        logger.warning("signing out of NeoPain only: %s", exc)
        return None
    if not end_session:
        return None
    query = urlencode(
        {
            "id_token_hint": id_token,
            "client_id": settings.OIDC_RP_CLIENT_ID,
            # Register this URL at the provider as a post-logout redirect URI (docs/sso.md).
            "post_logout_redirect_uri": request.build_absolute_uri(reverse("login")),
        }
    )
    return f"{end_session}{'&' if '?' in end_session else '?'}{query}"


class NeoPainLogoutView(auth_views.LogoutView):
    """Django's sign-out (POST); a session opened by the provider is ended at the provider too, so the
    next person at a shared workstation is asked for their own credentials."""

    def post(self, request, *args, **kwargs):
        provider_url = provider_logout_url(request)
        response = super().post(request, *args, **kwargs)
        return HttpResponseRedirect(provider_url) if provider_url else response
