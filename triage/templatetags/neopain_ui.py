"""Small display filters for the nurse UI: ages, probabilities, UTC times."""

from __future__ import annotations

import json
from datetime import UTC

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.filter
def age(moment) -> str:
    """'just now', '4 min', '2 h 05 min', '3 d' — short enough for a queue column."""
    if not moment:
        return ""
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    return age_text(seconds)


def age_text(seconds: int) -> str:
    if seconds < 60:
        return "just now"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d"


def ago_text(seconds: int) -> str:
    """'just now', '2 min ago', '1 h 05 min ago', '3 d ago': the one wording of a past moment."""
    return "just now" if seconds < 60 else f"{age_text(seconds)} ago"


def local_stamp(moment) -> str:
    """The absolute local time behind an "ago" label (its hover text): ``Sat 5 Dec 2026, 07:03:25 CET``."""
    local = timezone.localtime(moment)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M:%S} {local.tzname() or ''}".strip()


@register.filter
def time_ago(moment):
    """``<time>`` saying how long ago ``moment`` was, the absolute local time on hover.

    The text is kept current in the browser (``data-ago``, static/js/neopain.js). A moment in the
    future (a camera clock ahead of the server's) reads "just now", never a negative age.
    """
    if not moment:
        return ""
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    iso = moment.isoformat()
    return format_html(
        '<time datetime="{}" title="{}" data-ago="{}">{}</time>', iso, local_stamp(moment), iso, ago_text(seconds)
    )


@register.filter
def clock(moment):
    """``<time>`` with the local clock time ("07:03"), the full date and how long ago on hover: tables and charts."""
    if not moment:
        return ""
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    local = timezone.localtime(moment)
    return format_html(
        '<time datetime="{}" title="{} ({})">{}</time>',
        moment.isoformat(),
        local_stamp(moment),
        ago_text(seconds),
        f"{local:%H:%M}",
    )


@register.filter
def mmss(seconds) -> str:
    """A countdown as m:ss ('14:05', '0:09'); negative or missing reads 0:00."""
    try:
        seconds = max(0, int(seconds))
    except (TypeError, ValueError):
        seconds = 0
    return f"{seconds // 60}:{seconds % 60:02d}"


@register.filter
def prob(value, digits: int = 2) -> str:
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value):.{int(digits)}f}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def pct(value, digits: int = 0) -> str:
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value) * 100:.{int(digits)}f}%"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def utc(moment) -> str:
    """An unambiguous timestamp for the audit log: always UTC, always labelled."""
    if not moment:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@register.filter
def hhmm(moment) -> str:
    if not moment:
        return ""
    return timezone.localtime(moment).strftime("%H:%M")


@register.filter
def compact_json(value) -> str:
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def get_item(mapping, key):
    if mapping is None:
        return None
    try:
        return mapping.get(key)
    except AttributeError:
        return None
