"""A unit's people, managed by its unit admin in the app (not the Django admin): add, deactivate, set roles.

Every change is audited. A unit admin manages clinicians of her own unit only (nurses and unit
admins); ML engineers, bedside devices and superusers are the site operator's, and nobody changes
her own role or deactivates herself (a unit must not lose its last admin by a slip).
"""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from triage.models import Role, Unit, User
from triage.services.audit import audit_record

#: The roles a unit admin may give.
UNIT_ROLES = (Role.NURSE, Role.UNIT_ADMIN)


def _check_manageable(*, person: User, actor: User) -> None:
    if person.pk == actor.pk:
        raise ValidationError("You cannot change your own account here: ask another unit admin.")
    if person.is_superuser or person.role not in UNIT_ROLES:
        raise PermissionDenied("Only nurses and unit admins are managed here.")
    if not actor.is_superuser and person.unit_id != actor.unit_id:
        raise PermissionDenied("Another unit's staff.")


@transaction.atomic
def person_create(
    *,
    unit: Unit,
    actor: User,
    username: str,
    password: str,
    role: str = Role.NURSE,
    first_name: str = "",
    last_name: str = "",
    request=None,
) -> User:
    """Add a nurse or unit admin to ``unit`` with a first password (checked by the password validators)."""
    username = (username or "").strip()
    if role not in UNIT_ROLES:
        raise ValidationError({"role": ["Choose nurse or unit admin."]})
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": ["This user name is taken."]})
    person = User(username=username, role=role, unit=unit, first_name=first_name.strip(), last_name=last_name.strip())
    try:
        validate_password(password, user=person)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    person.set_password(password)
    person.full_clean(exclude=["password"], validate_unique=False)
    try:
        with transaction.atomic():
            person.save()
    except IntegrityError:  # added by a colleague a moment ago
        raise ValidationError({"username": ["This user name is taken."]}) from None
    audit_record(
        action="user.created",
        actor=actor,
        unit=unit,
        obj=person,
        after={"username": person.username, "role": person.role, "name": person.get_full_name()},
        request=request,
    )
    return person


@transaction.atomic
def person_active_set(*, person: User, active: bool, actor: User, request=None) -> User:
    """Deactivate (she can no longer sign in; her past work and audit rows stay) or reactivate someone."""
    person = User.objects.select_for_update().get(pk=person.pk)
    _check_manageable(person=person, actor=actor)
    if person.is_active == active:
        return person
    person.is_active = active
    person.save(update_fields=["is_active"])
    audit_record(
        action="user.reactivated" if active else "user.deactivated",
        actor=actor,
        unit=person.unit,
        obj=person,
        before={"active": not active},
        after={"active": active},
        request=request,
    )
    return person


@transaction.atomic
def person_role_set(*, person: User, role: str, actor: User, request=None) -> User:
    """Make someone a nurse or a unit admin; audited with the role before and after."""
    if role not in UNIT_ROLES:
        raise ValidationError({"role": ["Choose nurse or unit admin."]})
    person = User.objects.select_for_update().get(pk=person.pk)
    _check_manageable(person=person, actor=actor)
    if person.role == role:
        return person
    before = person.role
    person.role = role
    person.save(update_fields=["role"])  # the post_save signal moves her auth group with the role
    audit_record(
        action="user.role_changed",
        actor=actor,
        unit=person.unit,
        obj=person,
        before={"role": before},
        after={"role": role},
        request=request,
    )
    return person


@transaction.atomic
def person_charge_nurse_set(*, person: User, charge: bool, actor: User, request=None) -> User:
    """Name someone charge nurse (she receives the unit's escalated alerts) or take it back; audited."""
    person = User.objects.select_for_update().get(pk=person.pk)
    _check_manageable(person=person, actor=actor)
    if person.is_charge_nurse == charge:
        return person
    person.is_charge_nurse = charge
    person.save(update_fields=["is_charge_nurse"])
    audit_record(
        action="user.charge_nurse_set",
        actor=actor,
        unit=person.unit,
        obj=person,
        before={"charge_nurse": not charge},
        after={"charge_nurse": charge},
        request=request,
    )
    return person
