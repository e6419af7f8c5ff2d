"""The Django admin site: superusers only.

The admin is not unit-scoped (it lists every unit's neonates and audit rows) and its user form can
grant ``is_superuser``, so a unit admin given ``is_staff`` must not reach it at all. Day-to-day unit
administration happens in the app (unit settings page, audited); the admin is for the site operator.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class NeoPainAdminSite(admin.AdminSite):
    site_header = "NeoPain administration (superusers only)"
    site_title = "NeoPain admin"

    def has_permission(self, request) -> bool:
        user = request.user
        return bool(user.is_active and user.is_superuser)


class NeoPainAdminConfig(AdminConfig):
    default_site = "triage.admin_site.NeoPainAdminSite"
