"""Role checks for the API, enforced server-side. Superusers pass every check.

Roles (``User.role``): nurse and unit admin act in their own unit, the ML engineer manages models
and sees no patient images, a device only uploads (and reads back its own uploads). Objects of
another unit are filtered out of querysets, so they answer 404, not 403.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from triage.models import Role


def _active(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def user_has_role(user, *roles: str) -> bool:
    """True for an active user holding one of ``roles`` (superusers hold them all)."""
    if not _active(user):
        return False
    return bool(user.is_superuser or user.role in roles)


def user_is_clinical(user) -> bool:
    """Nurse or unit admin bound to a unit: may see that unit's patients and images."""
    return _active(user) and (
        user.is_superuser or (user.role in (Role.NURSE, Role.UNIT_ADMIN) and user.unit_id is not None)
    )


def user_is_device(user) -> bool:
    """An active device account whose camera row is active."""
    if not _active(user) or user.role != Role.DEVICE or user.unit_id is None:
        return False
    device = getattr(user, "device", None)
    return device is not None and device.active


class _RolePermission(BasePermission):
    roles: tuple[str, ...] = ()
    message = "Your role may not do this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not _active(user):
            return False
        if user.is_superuser:
            return True
        if user.role == Role.DEVICE:
            return Role.DEVICE in self.roles and user_is_device(user)
        if user.role in (Role.NURSE, Role.UNIT_ADMIN) and user.unit_id is None:
            return False
        return user.role in self.roles


class IsNurse(_RolePermission):
    roles = (Role.NURSE,)


class IsUnitAdmin(_RolePermission):
    roles = (Role.UNIT_ADMIN,)
    message = "Only a unit admin may do this."


class IsMLEngineer(_RolePermission):
    roles = (Role.ML_ENGINEER,)
    message = "Only an ML engineer may do this."


class IsDevice(_RolePermission):
    roles = (Role.DEVICE,)


class IsClinician(_RolePermission):
    """Nurse or unit admin of a unit."""

    roles = (Role.NURSE, Role.UNIT_ADMIN)
    message = "Only nurses and unit admins may do this."


class IsClinicianOrDevice(_RolePermission):
    roles = (Role.NURSE, Role.UNIT_ADMIN, Role.DEVICE)
    message = "Only nurses, unit admins and bedside devices may do this."


class IsClinicianOrMLEngineer(_RolePermission):
    roles = (Role.NURSE, Role.UNIT_ADMIN, Role.ML_ENGINEER)


class UnitScopedQuerysetMixin:
    """Restrict ``get_queryset`` to the caller's unit (``unit_field`` names the path to Unit).

    Superusers and, where ``all_units_roles`` says so, other roles see every unit; users without
    a unit see nothing. Another unit's object is therefore a 404.
    """

    unit_field = "unit"
    all_units_roles: tuple[str, ...] = ()

    def scope_to_unit(self, queryset):
        user = self.request.user
        if not _active(user):
            return queryset.none()
        if user.is_superuser or user.role in self.all_units_roles:
            return queryset
        if user.unit_id is None:
            return queryset.none()
        return queryset.filter(**{self.unit_field: user.unit_id})
