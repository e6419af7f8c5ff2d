"""Single sign-on fixtures: NeoPain configured for a provider (settings only, or a real one)."""

from __future__ import annotations

import pytest

from triage.sso.provider import provider_metadata_forget

ROLE_MAP = (("NeoPain.UnitAdmin", "unit_admin"), ("NeoPain.Nurse", "nurse"), ("NeoPain.ML", "ml_engineer"))


def configure_sso(settings, *, issuer: str, client_id: str = "neopain", client_secret: str = "neopain-test-secret"):
    """NeoPain's settings as neopain_site.sso_settings makes them from the environment, for ``issuer``."""
    from neopain_site.sso_settings import csp_with_provider

    settings.NEOPAIN_OIDC_ISSUER = issuer
    settings.NEOPAIN_OIDC_DISCOVERY_URL = ""
    settings.OIDC_RP_CLIENT_ID = client_id
    settings.OIDC_RP_CLIENT_SECRET = client_secret
    settings.NEOPAIN_OIDC_PROVIDER_NAME = "Hospital ID"
    settings.NEOPAIN_OIDC_ROLE_CLAIM = "roles"
    settings.NEOPAIN_OIDC_ROLE_MAP = ROLE_MAP
    settings.NEOPAIN_OIDC_UNIT_CLAIM = "neopain_unit"
    settings.NEOPAIN_OIDC_UNIT_MAP = ()
    settings.CONTENT_SECURITY_POLICY = csp_with_provider(settings.CONTENT_SECURITY_POLICY, issuer)
    provider_metadata_forget()


@pytest.fixture
def sso(settings):
    """SSO configured for a provider at https://idp.example.org (nothing answers there)."""
    configure_sso(settings, issuer="https://idp.example.org")
    yield settings
    provider_metadata_forget()
