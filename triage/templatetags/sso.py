"""``{% sso_login_options as sso %}``: what the sign-in page offers (the provider's button, passwords)."""

from django import template
from django.conf import settings

from triage.sso.provider import sso_enabled

register = template.Library()


@register.simple_tag
def sso_login_options() -> dict:
    return {
        "enabled": sso_enabled(),
        "provider_name": settings.NEOPAIN_OIDC_PROVIDER_NAME,
        # "true", "superusers" (the form stays, for administrators) or "false" (no form).
        "local_login": settings.NEOPAIN_LOCAL_LOGIN,
    }
