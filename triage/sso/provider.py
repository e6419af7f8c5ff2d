"""The identity provider's discovery document (OpenID Connect Discovery 1.0), fetched on first use and
kept for an hour: a provider that is down at start-up must not stop NeoPain from starting."""

from __future__ import annotations

import threading
import time

import requests
from django.conf import settings

_TTL_SECONDS = 3600
_cache: dict[str, tuple[float, dict]] = {}
_lock = threading.Lock()
_REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


class ProviderUnavailable(Exception):
    """The discovery document could not be read, or does not describe the configured issuer."""


def sso_enabled() -> bool:
    return bool(settings.NEOPAIN_OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


def discovery_url() -> str:
    issuer = settings.NEOPAIN_OIDC_ISSUER.rstrip("/")
    return settings.NEOPAIN_OIDC_DISCOVERY_URL or f"{issuer}/.well-known/openid-configuration"


def provider_metadata(*, refresh: bool = False) -> dict:
    """The provider's metadata (endpoints, ``issuer``). Raises :class:`ProviderUnavailable`."""
    url = discovery_url()
    with _lock:
        hit = _cache.get(url)
    if hit and not refresh and time.monotonic() - hit[0] < _TTL_SECONDS:
        return hit[1]
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        metadata = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"cannot read {url}: {exc}") from exc
    missing = [key for key in _REQUIRED if not isinstance(metadata, dict) or not metadata.get(key)]
    if missing:
        raise ProviderUnavailable(f"{url} lacks {', '.join(missing)}")
    # A document naming another issuer is the wrong provider (or a mix-up attack): never used.
    if metadata["issuer"].rstrip("/") != settings.NEOPAIN_OIDC_ISSUER.rstrip("/"):
        raise ProviderUnavailable(
            f"{url} describes the issuer {metadata['issuer']!r}, not NEOPAIN_OIDC_ISSUER={settings.NEOPAIN_OIDC_ISSUER!r}"
        )
    with _lock:
        _cache[url] = (time.monotonic(), metadata)
    return metadata


def provider_metadata_forget() -> None:
    """Drop the cached documents (tests; a provider that moved its endpoints)."""
    with _lock:
        _cache.clear()
