"""Role checks and request helpers shared by every server-rendered page.

Every view checks the role on the server and scopes rows to the caller's unit (another unit's
object is a 404). Live parts poll with ``?poll=1`` so the idle-logoff middleware does not count
them as activity.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from triage.models import Role


def has_role(user, roles: tuple[str, ...]) -> bool:
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.role in roles and user.unit_id is not None


def role_required(*roles: str):
    """Login required (redirect), then the role (403). Unit scoping happens in the selectors (404)."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, roles):
                raise PermissionDenied("Your role may not open this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


CLINICAL = (Role.NURSE, Role.UNIT_ADMIN)


def is_poll(request) -> bool:
    return request.GET.get("poll") == "1" or request.headers.get("HX-Trigger-Name") == "poll"



def page_number(request) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1
