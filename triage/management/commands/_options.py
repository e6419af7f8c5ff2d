"""Option handling shared by the management commands (a leading underscore: Django lists no command for it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.management.base import CommandError

if TYPE_CHECKING:
    from triage.models import Unit


def unit_from_option(*, code: str | None) -> Unit | None:
    """The unit named by a ``--unit`` option, None when it was not given; CommandError if no unit has that code."""
    from triage.models import Unit

    if not code:
        return None
    unit = Unit.objects.filter(code=code).first()
    if unit is None:
        raise CommandError(f"No unit with code {code!r}.")
    return unit
