"""Template context shared by every page: the active model, so a bootstrap-model banner is never missed,
and the open-alert badge (lazy: only pages that show the top bar pay its query, never htmx partials)."""

from django.utils.functional import SimpleLazyObject

from triage import selectors
from triage.models import Role


def neopain(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    model = selectors.active_model_for_unit(unit=user.unit)
    context = {"active_model": model, "active_model_is_bootstrap": bool(model and model.is_bootstrap)}
    if user.is_superuser or user.role in (Role.NURSE, Role.UNIT_ADMIN):
        context["alert_badge"] = SimpleLazyObject(lambda: selectors.alert_badge(user=user))
        context["alert_poll_seconds"] = selectors.ALERT_POLL_SECONDS
    return context
