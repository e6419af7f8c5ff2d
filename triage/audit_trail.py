"""Reads for the audit log page: each event in words a unit admin can read, image views grouped.

An audit row stores an object as ``triage.Prediction`` + ``19`` and a user name. The page shows
"crop of bed 3 · MRN-204311" and "Alice Smith (alice)" instead. Objects are looked up per type,
one query per type on the page (at most a dozen), never per row. Views of patient images (and
``phi.read`` page reads) by one person in a row, minutes apart, are one group: a live page that
re-requests thumbnails is one look at the ward, not forty lines.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist

from triage.models import AuditEvent, User

#: Consecutive views by the same person no further apart than this are one group.
VIEW_GROUP_GAP = timedelta(minutes=10)

# How to reach the baby from an object of each kind (the first path the model has wins).
_NEONATE_PATHS = ("neonate", "frame__neonate", "case__neonate", "prediction__frame__neonate")
_KIND_WORDS = {
    "triage.Prediction": "prediction",
    "triage.Frame": "frame",
    "triage.TriageCase": "case",
    "triage.Alert": "alert",
    "triage.Clip": "clip",
    "annotations.NipsAssessment": "NIPS assessment",
    "annotations.FaceBoxCorrection": "face-box correction",
    "triage.ApiToken": "API token",
}
_VIEW_WORDS = {"frame.viewed": "full frame", "crop.viewed": "crop", "saliency.viewed": "saliency map"}


def is_view(event: AuditEvent) -> bool:
    return event.action.endswith(".viewed") or event.action == "phi.read"


def neonate_words(neonate) -> str:
    return f"bed {neonate.bed or '—'} · {neonate.mrn}"


def person_words(user: User | None, username: str) -> str:
    if user is None:
        return username or "system"
    full = user.get_full_name()
    return f"{full} ({user.username})" if full else user.username


@dataclass
class AuditRow:
    """One line of the page: an event, or a group of views (``events`` holds them, newest first)."""

    event: AuditEvent
    who: str
    what: str
    events: list[AuditEvent] = field(default_factory=list)
    summary: str = ""

    @property
    def is_group(self) -> bool:
        return len(self.events) > 1

    @property
    def first_at(self) -> datetime:
        return self.events[-1].created_at if self.events else self.event.created_at


def _neonate_path(model) -> str | None:
    for path in _NEONATE_PATHS:
        try:
            current = model
            for part in path.split("__"):
                current = current._meta.get_field(part).related_model
        except FieldDoesNotExist:
            continue
        return path
    return None


def _objects_by_key(events: list[AuditEvent]) -> dict[tuple[str, str], object]:
    """``(object_type, object_id) -> instance`` for the events' objects, one query per type."""
    ids: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.object_type and event.object_id:
            ids[event.object_type].add(event.object_id)
    found: dict[tuple[str, str], object] = {}
    for label, pks in ids.items():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue
        path = _neonate_path(model)
        queryset = model._default_manager.all()
        if path:
            queryset = queryset.select_related(path)
        valid = [pk for pk in pks if pk.isdigit()]
        for obj in queryset.filter(pk__in=valid):
            found[(label, str(obj.pk))] = obj
    return found


def _baby_of(obj):
    path = _neonate_path(type(obj))
    if path is None:
        return None
    current = obj
    for part in path.split("__"):
        current = getattr(current, part, None)
        if current is None:
            return None
    return current


def object_words(event: AuditEvent, obj) -> str:
    """What the event was about, in words: the baby's bed and MRN, a person's name, a model's label."""
    label, pk = event.object_type, event.object_id
    if not label:
        return "—"
    if obj is None:
        return f"{label.split('.')[-1]} {pk} (gone)" if pk else label.split(".")[-1]
    model_name = label.split(".")[-1]
    if model_name == "Neonate":
        return f"baby {neonate_words(obj)}"
    if model_name == "User":
        return f"person {person_words(obj, '')}, {obj.get_role_display().lower()}"
    if model_name == "Device":
        return f"camera {obj.name}"
    if model_name == "ModelVersion":
        return f"model {obj.label}"
    if model_name in ("Unit", "UnitSettings"):
        return f"unit {getattr(obj, 'unit', obj)}"
    baby = _baby_of(obj)
    kind = _VIEW_WORDS.get(event.action) or _KIND_WORDS.get(label, model_name)
    if baby is not None:
        return f"{kind} of {neonate_words(baby)}"
    return f"{kind} {pk}"


def _group_summary(events: list[AuditEvent], objects: dict) -> str:
    kinds: dict[str, int] = defaultdict(int)
    babies: dict[str, None] = {}
    for event in events:
        kinds[_VIEW_WORDS.get(event.action) or ("page" if event.action == "phi.read" else event.action)] += 1
        obj = objects.get((event.object_type, event.object_id))
        baby = _baby_of(obj) if obj is not None else None
        if baby is not None:
            babies[neonate_words(baby)] = None
    counted = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(kinds.items()))
    about = f" of {'; '.join(babies)}" if babies else ""
    return f"{len(events)} views: {counted}{about}"


def audit_rows(events: list[AuditEvent]) -> list[AuditRow]:
    """The page's events (newest first) as rows: objects and people in words, runs of views grouped."""
    objects = _objects_by_key(events)
    usernames = {e.actor_username for e in events if e.actor_username}
    people = {u.username: u for u in User.objects.filter(username__in=usernames)}
    rows: list[AuditRow] = []
    for event in events:
        last = rows[-1] if rows else None
        if (
            last is not None
            and is_view(event)
            and is_view(last.event)
            and event.actor_username == last.event.actor_username
            and last.first_at - event.created_at <= VIEW_GROUP_GAP
        ):
            last.events.append(event)
            continue
        rows.append(
            AuditRow(
                event=event,
                who=person_words(people.get(event.actor_username), event.actor_username),
                what=object_words(event, objects.get((event.object_type, event.object_id))),
                events=[event],
            )
        )
    for row in rows:
        if row.is_group:
            row.summary = _group_summary(row.events, objects)
    return rows
