"""``{% open_disagreements %}``: the unit's unreviewed double-scoring disagreements, for the dashboard."""

from __future__ import annotations

from django import template

from annotations.disagreements import disagreements_open

register = template.Library()


@register.inclusion_tag("annotations/_disagreements.html", takes_context=True)
def open_disagreements(context, limit: int = 10) -> dict:
    user = context["request"].user
    if not (user.is_authenticated and (user.is_superuser or user.role in ("nurse", "unit_admin"))):
        return {"disagreements": [], "total": 0}
    rows = disagreements_open(user=user)
    return {"disagreements": list(rows[:limit]), "total": rows.count()}
