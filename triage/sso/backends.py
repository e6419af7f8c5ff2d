"""Authentication backends: passwords (which ``NEOPAIN_LOCAL_LOGIN`` can switch off) and the
OpenID Connect provider (mozilla-django-oidc, with the checks it leaves out added here)."""

from __future__ import annotations

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from triage.services.sso import sso_sign_in
from triage.sso.claims import SsoRefused
from triage.sso.provider import provider_metadata, sso_enabled

#: Clock difference allowed between NeoPain and the provider when checking an ID token's times.
ID_TOKEN_LEEWAY_SECONDS = 60


def local_login_allows(user) -> bool:
    """``NEOPAIN_LOCAL_LOGIN``: ``true`` everyone, ``superusers`` only superusers (a way in while the
    provider is down), ``false`` nobody signs in with a password."""
    mode = settings.NEOPAIN_LOCAL_LOGIN
    return mode == "true" or (mode == "superusers" and user.is_superuser)


class LocalPasswordBackend(ModelBackend):
    """Django's user name and password sign-in, unless ``NEOPAIN_LOCAL_LOGIN`` switches it off. Sessions
    it opened end too when it is switched off (``get_user`` asks the same question). API tokens are
    not affected."""

    def user_can_authenticate(self, user) -> bool:
        return local_login_allows(user) and super().user_can_authenticate(user)


class OIDCBackend(OIDCAuthenticationBackend):
    """The provider's sign-in: the authorization code (with PKCE), the ID token checked (signature,
    issuer, audience, expiry, nonce), then :func:`triage.services.sso.sso_sign_in`.

    Endpoints come from the discovery document, read only when a callback arrives: a password sign-in
    never reaches the provider.
    """

    # mozilla-django-oidc's attribute names, read from the settings and the discovery document.
    OIDC_RP_IDP_SIGN_KEY = None

    def __init__(self, *args, **kwargs):
        self.UserModel = get_user_model()

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:
        return provider_metadata()["token_endpoint"]

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str | None:
        return provider_metadata().get("userinfo_endpoint")

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:
        return provider_metadata()["jwks_uri"]

    @property
    def OIDC_RP_CLIENT_ID(self) -> str:
        return settings.OIDC_RP_CLIENT_ID

    @property
    def OIDC_RP_CLIENT_SECRET(self) -> str:
        return settings.OIDC_RP_CLIENT_SECRET

    @property
    def OIDC_RP_SIGN_ALGO(self) -> str:
        return settings.OIDC_RP_SIGN_ALGO

    def authenticate(self, request, nonce=None, code_verifier=None, **credentials):
        # Only the callback view passes a nonce; a user name and password never come here.
        if request is None or nonce is None or credentials or not sso_enabled():
            return None
        return super().authenticate(request, nonce=nonce, code_verifier=code_verifier)

    def _verify_jws(self, payload, key):
        """mozilla-django-oidc checks the signature only: the issuer and the audience are checked here too
        (an ID token the provider minted for another application is refused)."""
        alg = jwt.get_unverified_header(payload).get("alg")
        if alg != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(f"ID token signed with {alg!r}, expected {self.OIDC_RP_SIGN_ALGO!r}")
        try:
            claims = jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=provider_metadata()["issuer"],
                leeway=ID_TOKEN_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise SuspiciousOperation(f"ID token refused: {exc}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.OIDC_RP_CLIENT_ID:
            # OpenID Connect Core 3.1.3.7: a token for several audiences must name us as its authorized party.
            raise SuspiciousOperation("ID token refused: several audiences and another authorized party (azp)")
        return claims

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint's when the provider has one (Entra ID
        puts ``roles`` in the ID token only; Keycloak and Okta can put claims in either)."""
        if not self.OIDC_OP_USER_ENDPOINT:
            return dict(payload)
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if str(userinfo.get("sub", payload.get("sub"))) != str(payload.get("sub")):
            # OpenID Connect Core 5.3.2: a userinfo answer for another subject must not be used.
            raise SuspiciousOperation("userinfo names another subject than the ID token")
        return {**payload, **userinfo}

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        try:
            return sso_sign_in(issuer=provider_metadata()["issuer"], claims=claims, request=self.request)
        except SsoRefused as refusal:
            # The callback view shows the reason; PermissionDenied stops the other backends.
            self.request.neopain_sso_refusal = refusal
            raise PermissionDenied(refusal.code) from refusal

    def get_user(self, user_id):
        # Django's check (an inactive user's session ends), which mozilla-django-oidc's get_user skips.
        return ModelBackend.get_user(self, user_id)
