"""Single sign-on: the NeoPain account behind a person the identity provider signed in.

The first sign-in of an unknown person creates the account with the role and unit their claims map
to; later sign-ins follow the provider (a person moved to another unit, or given another role, has it
at the next sign-in). A person whose claims do not map is refused, with a reason they can act on.
Every outcome is audited: ``sso.login``, ``sso.account_created``, ``sso.account_updated``,
``sso.refused``.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from triage.models import ExternalIdentity, Role, Unit, User
from triage.services.audit import audit_record
from triage.sso.claims import SsoRefused, claim_values, role_from_claims, unit_code_from_claims

_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")


def _display_name(claims: dict) -> str:
    return str(claims.get("preferred_username") or claims.get("email") or claims.get("sub") or "")[:150]


def _username_free(claims: dict) -> str:
    """A user name for a new account: the provider's user name (or e-mail, or subject), made unique with
    a suffix. Never used to find an existing account: a local ``alice`` is not the provider's ``alice``."""
    base = _USERNAME_UNSAFE.sub("", _display_name(claims))[:140] or "sso-user"
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _mapped_role_and_unit(claims: dict) -> tuple[str, Unit | None]:
    provider = settings.NEOPAIN_OIDC_PROVIDER_NAME
    role = role_from_claims(
        claims, claim=settings.NEOPAIN_OIDC_ROLE_CLAIM, role_map=settings.NEOPAIN_OIDC_ROLE_MAP, provider=provider
    )
    code = unit_code_from_claims(
        claims,
        role=role,
        claim=settings.NEOPAIN_OIDC_UNIT_CLAIM,
        unit_map=settings.NEOPAIN_OIDC_UNIT_MAP,
        provider=provider,
    )
    if code is None:
        return role, None
    unit = Unit.objects.filter(code=code).first()
    if unit is None:
        raise SsoRefused(
            code="unknown_unit",
            reason=f"Your account at {provider} names the unit “{code}”, which NeoPain does not have. Ask your unit admin.",
            seen={settings.NEOPAIN_OIDC_UNIT_CLAIM: claim_values(claims, settings.NEOPAIN_OIDC_UNIT_CLAIM)},
        )
    return role, unit


def _snapshot(user: User) -> dict:
    return {"role": user.role, "unit": user.unit.code if user.unit else None}


@transaction.atomic
def _sso_account(*, issuer: str, claims: dict, request=None) -> User:
    subject = str(claims.get("sub") or "")
    if not subject:
        raise SsoRefused(code="no_subject", reason="The identity provider did not say who you are (no “sub” claim).")
    identity = ExternalIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    role, unit = _mapped_role_and_unit(claims)
    identity_after = {"issuer": issuer, "subject": subject}
    if identity is None:
        user = User(
            username=_username_free(claims),
            email=str(claims.get("email") or "")[:254],
            first_name=str(claims.get("given_name") or "")[:150],
            last_name=str(claims.get("family_name") or "")[:150],
            role=role,
            unit=unit,
        )
        # Signs in through the provider only: no password to guess, leak or reuse.
        user.set_unusable_password()
        user.save()
        identity = ExternalIdentity.objects.create(issuer=issuer, subject=subject, user=user)
        audit_record(
            action="sso.account_created",
            actor=user,
            obj=user,
            after={**_snapshot(user), **identity_after},
            request=request,
        )
    else:
        user = identity.user
        if user.role == Role.DEVICE:
            raise SsoRefused(code="not_a_person", reason="This identity is linked to a bedside camera's account.")
        if not user.is_active:
            raise SsoRefused(
                code="account_disabled",
                reason="Your NeoPain account is switched off. Ask your unit admin to switch it on.",
            )
        before = _snapshot(user)
        if (user.role, user.unit_id) != (role, unit.pk if unit else None):
            user.role, user.unit = role, unit
            user.save(update_fields=["role", "unit"])
            audit_record(
                action="sso.account_updated",
                actor=user,
                obj=user,
                before=before,
                after=_snapshot(user),
                request=request,
            )
    identity.last_login_at = timezone.now()
    identity.save(update_fields=["last_login_at"])
    audit_record(action="sso.login", actor=user, obj=user, after={**_snapshot(user), **identity_after}, request=request)
    return user


def sso_sign_in(*, issuer: str, claims: dict, request=None) -> User:
    """The account of the person the provider ``issuer`` vouches for with ``claims`` (ID token and
    userinfo, verified), created or brought up to date; :class:`SsoRefused` when NeoPain refuses."""
    try:
        return _sso_account(issuer=issuer, claims=claims, request=request)
    except SsoRefused as refusal:
        # Outside the transaction above, which a refusal rolls back: the refusal itself stays on record.
        identity = ExternalIdentity.objects.filter(issuer=issuer, subject=str(claims.get("sub") or "")).first()
        audit_record(
            action="sso.refused",
            actor=identity.user if identity else None,
            actor_username=_display_name(claims),
            after={"issuer": issuer, "subject": str(claims.get("sub") or ""), "reason": refusal.code, **refusal.seen},
            request=request,
        )
        raise


def sso_refusal_record(*, issuer: str, code: str, detail: str, request=None) -> None:
    """Audit a sign-in that failed before any claims were read (the provider answered an error, or its
    answer could not be verified)."""
    audit_record(
        action="sso.refused", after={"issuer": issuer, "reason": code, "detail": detail[:500]}, request=request
    )
