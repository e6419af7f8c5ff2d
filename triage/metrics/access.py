"""Who may scrape: a caller presenting ``Authorization: Bearer <NEOPAIN_METRICS_TOKEN>``, or one whose
address is in ``NEOPAIN_METRICS_ALLOWED_IPS``. With neither configured nobody may: the figures
(units, volumes, queue depths) are operational data, not public."""

from __future__ import annotations

import hmac
import ipaddress


def _address_allowed(ip: str | None, allowed: list[str]) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def metrics_request_allowed(*, authorization: str, ip: str | None, token: str, allowed_ips: list[str]) -> bool:
    """True for the right bearer token (compared in constant time) or an allow-listed address."""
    scheme, _, presented = (authorization or "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
        return True
    return _address_allowed(ip, allowed_ips)
