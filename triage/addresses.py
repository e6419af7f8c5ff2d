"""The caller's network address, seen through the configured reverse proxies.

Behind a proxy every request arrives from the proxy's address: the sign-in throttle and the audit
log would lump every nurse together. ``X-Forwarded-For`` is believed only when the connection
comes from one of ``NEOPAIN_TRUSTED_PROXIES``, and then only up to the first hop that is not a
trusted proxy (a client can put anything at the left end of the header).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"NEOPAIN_TRUSTED_PROXIES: {entry!r} is not an address or network") from None
    return tuple(networks)


def _parse(address: str):
    try:
        return ipaddress.ip_address(address.strip())
    except ValueError:
        return None


def _trusted(address, networks) -> bool:
    return address is not None and any(address in network for network in networks)


def client_ip(request) -> str | None:
    """The client's address: ``REMOTE_ADDR``, or the right-most untrusted ``X-Forwarded-For`` hop
    when ``REMOTE_ADDR`` is a trusted proxy."""
    if request is None:
        return None
    remote = request.META.get("REMOTE_ADDR") or None
    networks = _networks(tuple(settings.NEOPAIN_TRUSTED_PROXIES))
    if remote is None or not networks or not _trusted(_parse(remote), networks):
        return remote
    hops = [h for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            return remote  # a garbled chain: fall back to what we know
        if not _trusted(address, networks):
            return str(address)
    return str(_parse(hops[0])) if hops else remote
