"""From an identity provider's claims to a NeoPain role and unit: pure functions, no database.

The maps come from ``NEOPAIN_OIDC_ROLE_MAP`` / ``NEOPAIN_OIDC_UNIT_MAP`` (neopain_site.sso_settings),
pairs of (claim value, NeoPain role or unit code) in the order written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Roles that only see their own unit: a sign-in without exactly one unit is refused for them.
UNIT_SCOPED_ROLES = ("nurse", "unit_admin")


@dataclass
class SsoRefused(Exception):
    """The provider signed the person in, but NeoPain will not: ``reason`` is shown to them as it is."""

    code: str
    reason: str
    seen: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


def claim_values(claims: dict, path: str) -> list[str]:
    """The values of a claim as strings; ``path`` may be dotted for a nested claim (Keycloak's
    ``realm_access.roles``). A missing claim is an empty list, a single value a list of one."""
    value = claims
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return []
        value = value[key]
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(item) for item in value if item is not None]
    return [str(value)]


def role_from_claims(claims: dict, *, claim: str, role_map: tuple[tuple[str, str], ...], provider: str) -> str:
    """The first role of ``role_map`` whose claim value the person carries (list the most privileged first)."""
    values = set(claim_values(claims, claim))
    for claim_value, role in role_map:
        if claim_value in values:
            return role
    raise SsoRefused(
        code="no_role",
        reason=(
            f"Your account at {provider} does not give you a NeoPain role. "
            f"Ask your identity provider's administrators to assign you one (claim “{claim}”)."
        ),
        seen={claim: sorted(values)},
    )


def unit_code_from_claims(
    claims: dict, *, role: str, claim: str, unit_map: tuple[tuple[str, str], ...], provider: str
) -> str | None:
    """The code of the person's unit. Nurses and unit admins need exactly one; an ML engineer (all
    units) may carry none or several, and then has none."""
    values = claim_values(claims, claim)
    if unit_map:
        present = set(values)
        codes = list(dict.fromkeys(code for claim_value, code in unit_map if claim_value in present))
    else:
        codes = list(dict.fromkeys(values))
    if len(codes) == 1:
        return codes[0]
    if role not in UNIT_SCOPED_ROLES:
        return None
    if not codes:
        raise SsoRefused(
            code="no_unit",
            reason=(
                f"Your account at {provider} does not say which unit you work in. "
                f"Ask your identity provider's administrators to set it (claim “{claim}”)."
            ),
            seen={claim: values},
        )
    raise SsoRefused(
        code="several_units",
        reason=(
            f"Your account at {provider} names several units ({', '.join(codes)}); "
            "a nurse or unit admin works in one. Ask your identity provider's administrators to keep one."
        ),
        seen={claim: values},
    )
