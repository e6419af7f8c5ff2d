"""The Django admin site: superusers only.

The admin is not unit-scoped (it lists every unit's neonates and audit rows) and its user form can
grant ``is_superuser``, so a unit admin given ``is_staff`` must not reach it at all. Day-to-day unit
administration happens in the app (unit settings page, audited); the admin is for the site operator.
"""

from __future__ import annotations

from functools import wraps

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied

#: What a signed-in person without admin rights reads instead of a second sign-in form.
NOT_FOR_YOU = (
    "The Django admin is for the site operator (superusers) only. You are signed in already: unit admins "
    "manage people, babies and cameras on the unit pages (Unit menu)."
)


class NeoPainAdminSite(admin.AdminSite):
    site_header = "NeoPain administration (superusers only)"
    site_title = "NeoPain admin"

    def has_permission(self, request) -> bool:
        user = request.user
        return bool(user.is_active and user.is_superuser)

    def admin_view(self, view, cacheable=False):
        """A signed-in non-superuser gets a 403 that says where to go, never the admin's sign-in form."""
        inner = super().admin_view(view, cacheable)

        @wraps(view)
        def gate(request, *args, **kwargs):
            if request.user.is_authenticated and not self.has_permission(request):
                raise PermissionDenied(NOT_FOR_YOU)
            return inner(request, *args, **kwargs)

        return gate


class NeoPainAdminConfig(AdminConfig):
    default_site = "triage.admin_site.NeoPainAdminSite"
