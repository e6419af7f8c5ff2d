"""Template context shared by every page: the active model, so a bootstrap-model banner is never missed."""

from triage import selectors


def neopain(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    model = selectors.active_model_for_unit(unit=user.unit)
    return {"active_model": model, "active_model_is_bootstrap": bool(model and model.is_bootstrap)}
