"""Single sign-on with OpenID Connect (mozilla-django-oidc), configured from the environment.

Off unless ``NEOPAIN_OIDC_ISSUER`` is set. The provider's endpoints come from its discovery document
(``<issuer>/.well-known/openid-configuration``), fetched on first use, not here: a provider that is
down must not stop NeoPain from starting (local accounts and API tokens keep working).
Included by :mod:`neopain_site.settings`; docs/sso.md says how to connect Entra ID, Keycloak, Okta.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

#: Roles an identity provider may grant. Never ``device`` (cameras use API tokens), never staff or
#: superuser (those stay local, set by hand).
SSO_GRANTABLE_ROLES = ("nurse", "unit_admin", "ml_engineer")
LOCAL_LOGIN_MODES = ("true", "false", "superusers")


def _env(name: str, default: str = "") -> str:
    """The variable, or ``default`` when unset or empty (.env.example lists them empty)."""
    return os.environ.get(name, "").strip() or default


def env_secret(name: str) -> str:
    """``NAME`` or the content of the file named by ``NAME_FILE`` (Docker secrets)."""
    file_name = _env(f"{name}_FILE")
    return Path(file_name).read_text().strip() if file_name else _env(name)


def parse_claim_map(raw: str, *, name: str, allowed: tuple[str, ...] | None = None) -> tuple[tuple[str, str], ...]:
    """``"a=nurse, b=unit_admin"`` -> ``(("a", "nurse"), ("b", "unit_admin"))``, order kept (it is the
    precedence when a person carries several values). ``allowed`` limits the right-hand sides."""
    pairs = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        claim_value, sep, target = (piece.strip() for piece in item.rpartition("="))
        if not sep or not claim_value or not target:
            raise ImproperlyConfigured(f"{name}: {item!r} is not claim-value=target")
        if allowed is not None and target not in allowed:
            raise ImproperlyConfigured(f"{name}: {target!r} is not one of {', '.join(allowed)}")
        pairs.append((claim_value, target))
    return tuple(pairs)


def provider_origin(url: str) -> str:
    """``https://login.example.org/realms/x`` -> ``https://login.example.org`` (for the CSP)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def csp_with_provider(policy: dict, issuer: str) -> dict:
    """The Content-Security-Policy with the provider allowed as a form target: the Sign out form posts
    to NeoPain, which redirects to the provider's logout page, and browsers hold a form's redirects
    to ``form-action`` too."""
    origin = provider_origin(issuer)
    if not origin:
        return policy
    directives = dict(policy["DIRECTIVES"])
    directives["form-action"] = [*directives["form-action"], origin]
    return {**policy, "DIRECTIVES": directives}


NEOPAIN_OIDC_ISSUER = _env("NEOPAIN_OIDC_ISSUER").rstrip("/")
NEOPAIN_OIDC_DISCOVERY_URL = _env("NEOPAIN_OIDC_DISCOVERY_URL") or (
    f"{NEOPAIN_OIDC_ISSUER}/.well-known/openid-configuration" if NEOPAIN_OIDC_ISSUER else ""
)
# The button reads "Sign in with <this>".
NEOPAIN_OIDC_PROVIDER_NAME = _env("NEOPAIN_OIDC_PROVIDER_NAME", "single sign-on")
NEOPAIN_OIDC_ROLE_CLAIM = _env("NEOPAIN_OIDC_ROLE_CLAIM", "roles")
NEOPAIN_OIDC_ROLE_MAP = parse_claim_map(
    _env("NEOPAIN_OIDC_ROLE_MAP"), name="NEOPAIN_OIDC_ROLE_MAP", allowed=SSO_GRANTABLE_ROLES
)
NEOPAIN_OIDC_UNIT_CLAIM = _env("NEOPAIN_OIDC_UNIT_CLAIM", "neopain_unit")
# Empty: the unit claim's value is the unit's code.
NEOPAIN_OIDC_UNIT_MAP = parse_claim_map(_env("NEOPAIN_OIDC_UNIT_MAP"), name="NEOPAIN_OIDC_UNIT_MAP")
NEOPAIN_LOCAL_LOGIN = _env("NEOPAIN_LOCAL_LOGIN", "true").lower()
if NEOPAIN_LOCAL_LOGIN not in LOCAL_LOGIN_MODES:
    raise ImproperlyConfigured(
        f"NEOPAIN_LOCAL_LOGIN must be one of {', '.join(LOCAL_LOGIN_MODES)}, not {NEOPAIN_LOCAL_LOGIN!r}"
    )

OIDC_RP_CLIENT_ID = _env("NEOPAIN_OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_secret("NEOPAIN_OIDC_CLIENT_SECRET")
OIDC_RP_SCOPES = _env("NEOPAIN_OIDC_SCOPES", "openid email profile")
OIDC_RP_SIGN_ALGO = _env("NEOPAIN_OIDC_SIGN_ALGO", "RS256")
# OpenID ``prompt``: ``login`` makes the provider ask for credentials at every NeoPain sign-in, even
# while its own session lives on (shared ward workstations: an idle logoff ends NeoPain's session only).
NEOPAIN_OIDC_PROMPT = _env("NEOPAIN_OIDC_PROMPT")
if NEOPAIN_OIDC_PROMPT and not set(NEOPAIN_OIDC_PROMPT.split()) <= {"login", "select_account", "consent", "none"}:
    raise ImproperlyConfigured(
        f"NEOPAIN_OIDC_PROMPT must be login, select_account or consent, not {NEOPAIN_OIDC_PROMPT!r}"
    )
OIDC_AUTH_REQUEST_EXTRA_PARAMS = {"prompt": NEOPAIN_OIDC_PROMPT} if NEOPAIN_OIDC_PROMPT else {}
try:
    OIDC_TIMEOUT = float(_env("NEOPAIN_OIDC_TIMEOUT_SECONDS", "10") or 10)
except ValueError:
    raise ImproperlyConfigured("NEOPAIN_OIDC_TIMEOUT_SECONDS must be a number of seconds.") from None
if NEOPAIN_OIDC_ISSUER:
    missing = [
        name
        for name, value in (
            ("NEOPAIN_OIDC_CLIENT_ID", OIDC_RP_CLIENT_ID),
            ("NEOPAIN_OIDC_CLIENT_SECRET", OIDC_RP_CLIENT_SECRET),
            ("NEOPAIN_OIDC_ROLE_MAP", NEOPAIN_OIDC_ROLE_MAP),
        )
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(f"NEOPAIN_OIDC_ISSUER is set: also set {', '.join(missing)} (docs/sso.md).")
    if "openid" not in OIDC_RP_SCOPES.split():
        raise ImproperlyConfigured("NEOPAIN_OIDC_SCOPES must include openid.")
    if not OIDC_RP_SIGN_ALGO.startswith(("RS", "ES", "PS")):
        # HS256 would verify ID tokens with the client secret: refused, the provider's keys are the point.
        raise ImproperlyConfigured("NEOPAIN_OIDC_SIGN_ALGO must be an asymmetric algorithm (RS256, ES256, PS256 ...).")
elif NEOPAIN_LOCAL_LOGIN != "true":
    raise ImproperlyConfigured(
        f"NEOPAIN_LOCAL_LOGIN={NEOPAIN_LOCAL_LOGIN} needs NEOPAIN_OIDC_ISSUER: nobody could sign in."
    )

# mozilla-django-oidc: authorization code flow with PKCE (S256) and a nonce; the client authenticates
# with HTTP Basic (client_secret_basic, the OpenID default every provider supports).
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_USE_NONCE = True
OIDC_TOKEN_USE_BASIC_AUTH = True
# The ID token is kept in the session for RP-initiated logout (id_token_hint, triage.sso.views).
OIDC_STORE_ID_TOKEN = True
LOGIN_REDIRECT_URL_FAILURE = "login"
# Endpoints: from discovery (triage.sso.provider); not read from here.
OIDC_OP_AUTHORIZATION_ENDPOINT = OIDC_OP_TOKEN_ENDPOINT = OIDC_OP_USER_ENDPOINT = OIDC_OP_JWKS_ENDPOINT = ""

__all__ = [
    "OIDC_AUTH_REQUEST_EXTRA_PARAMS",
    "LOGIN_REDIRECT_URL_FAILURE",
    "NEOPAIN_LOCAL_LOGIN",
    "NEOPAIN_OIDC_DISCOVERY_URL",
    "NEOPAIN_OIDC_ISSUER",
    "NEOPAIN_OIDC_PROMPT",
    "NEOPAIN_OIDC_PROVIDER_NAME",
    "NEOPAIN_OIDC_ROLE_CLAIM",
    "NEOPAIN_OIDC_ROLE_MAP",
    "NEOPAIN_OIDC_UNIT_CLAIM",
    "NEOPAIN_OIDC_UNIT_MAP",
    "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_JWKS_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT",
    "OIDC_PKCE_CODE_CHALLENGE_METHOD",
    "OIDC_RP_CLIENT_ID",
    "OIDC_RP_CLIENT_SECRET",
    "OIDC_RP_SCOPES",
    "OIDC_RP_SIGN_ALGO",
    "OIDC_STORE_ID_TOKEN",
    "OIDC_TIMEOUT",
    "OIDC_TOKEN_USE_BASIC_AUTH",
    "OIDC_USE_NONCE",
    "OIDC_USE_PKCE",
    "csp_with_provider",
]
