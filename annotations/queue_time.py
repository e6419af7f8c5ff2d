"""The dashboard's time-first order: fresh frames first, grouped per baby; stale frames after, grouped per baby.

A frame is *fresh* while it was captured less than the unit's ``stale_after_minutes`` ago (default
10): the baby may look like that now. Older frames are *stale*. The dashboard lists groups: one
group per baby and tier (fresh or stale), fresh groups first. Within each tier the baby with the
most pain-like frame comes first; within a group, the most pain-like frame first (oldest first among
equals, as the pain-first queue did), so a likely-pain frame is never behind unlikely ones of the
same baby and tier.

Cost: :func:`queue_groups` is one aggregate query over the queue (it replaces the plain count: the
total and every group's size, fresh count and time span come from it); a page is then its ids in
this order (one ``ORDER BY CASE <group rank>`` query with ``LIMIT``) and those rows by id, so the
number of queries does not grow with the queue (tests/perf/test_queue_queries.py) and the groups
can span pages. The API (``/api/v1/cases/``) keeps the pain-first order of
:data:`annotations.selectors.QUEUE_ORDER`, whose keyset cursor needs an order that does not move
with the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Case, Count, IntegerField, Max, Min, Q, QuerySet, Value, When
from django.utils import timezone

from annotations.models import NipsAssessment
from annotations.selectors import _queue_filter, _scope
from triage.models import TriageCase, UnitSettings, User

GROUP_ORDER = ("-p_pain", "created_at", "id")
"""Within a group: most pain-like first, oldest first among equals."""


@dataclass(frozen=True)
class QueueGroup:
    """One baby's open cases in one tier (fresh or stale), and where the group starts in the queue."""

    neonate_id: int
    fresh: bool
    size: int
    max_p_pain: float
    first_captured: datetime
    last_captured: datetime
    start: int = 0

    def summary(self, *, now: datetime) -> str:
        """'3 frames in the last 5 minutes' (fresh) or '12 older frames, captured 2 h 05 min to 14 min ago' (stale)."""
        from triage.templatetags.neopain_ui import age_text

        frames = f"{self.size} frame{'s' if self.size != 1 else ''}"
        if self.fresh:
            minutes = max(1, -(-int((now - self.first_captured).total_seconds()) // 60))
            return f"{frames} in the last {minutes} minute{'s' if minutes != 1 else ''}"
        oldest = age_text(max(0, int((now - self.first_captured).total_seconds())))
        newest = age_text(max(0, int((now - self.last_captured).total_seconds())))
        if self.size == 1:
            return f"1 older frame, captured {oldest} ago"
        return f"{self.size} older frames, captured {oldest} to {newest} ago"


@dataclass
class QueueGroups:
    """The queue's groups in dashboard order, with the totals the page shows."""

    cutoff: datetime
    stale_after_minutes: int
    groups: list[QueueGroup] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(g.size for g in self.groups)

    @property
    def fresh_total(self) -> int:
        return sum(g.size for g in self.groups if g.fresh)

    @property
    def stale_total(self) -> int:
        return self.total - self.fresh_total

    def key(self) -> str:
        """Changes when the total, the fresh/stale split or the groups change (part of the poll's fingerprint)."""
        return ";".join(f"{g.neonate_id}{'f' if g.fresh else 's'}{g.size}" for g in self.groups)

    def group_of(self, *, neonate_id: int, captured_at: datetime) -> QueueGroup | None:
        fresh = captured_at >= self.cutoff
        return next((g for g in self.groups if g.neonate_id == neonate_id and g.fresh == fresh), None)


def stale_after_minutes_for(*, unit_id: int | None) -> int:
    """The unit's ``stale_after_minutes`` in one narrow query (the default for a superuser without a unit)."""
    default = UnitSettings._meta.get_field("stale_after_minutes").default
    if unit_id is None:
        return default
    minutes = UnitSettings.objects.filter(unit_id=unit_id).values_list("stale_after_minutes", flat=True).first()
    return minutes or default


def _queue_base(*, user: User, unit=None) -> QuerySet:
    """The open cases ``user`` may score, filtered as :func:`annotations.selectors.queue_count` does."""
    qs = _queue_filter(_scope(TriageCase.objects.all(), user), status="open", unit=unit)
    if user.role == "nurse":
        qs = qs.exclude(pk__in=NipsAssessment.objects.filter(nurse=user).values("case_id"))
    return qs


def queue_groups(*, user: User, stale_after_minutes: int, now: datetime | None = None, unit=None) -> QueueGroups:
    """Every (baby, tier) group of the open queue in dashboard order: one aggregate query.

    Fresh groups first, then stale ones; within a tier the group with the highest p(pain) first
    (then the baby's id, so the order is total).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=stale_after_minutes)
    # Grouped by baby only, each tier a filtered aggregate: ~30 groups that PostgreSQL hashes; grouping
    # by (baby, CASE fresh) made it sort every open case first (110,000 open: 85 ms -> 50 ms).
    tiers = {"f": Q(captured_at__gte=cutoff), "s": Q(captured_at__lt=cutoff)}
    aggregates = {}
    for tier, condition in tiers.items():
        aggregates.update(
            {
                f"{tier}_size": Count("pk", filter=condition),
                f"{tier}_max_p": Max("p_pain", filter=condition),
                f"{tier}_first": Min("captured_at", filter=condition),
                f"{tier}_last": Max("captured_at", filter=condition),
            }
        )
    rows = _queue_base(user=user, unit=unit).order_by().values("neonate_id").annotate(**aggregates)
    groups = sorted(
        (
            QueueGroup(
                neonate_id=row["neonate_id"],
                fresh=tier == "f",
                size=row[f"{tier}_size"],
                max_p_pain=row[f"{tier}_max_p"],
                first_captured=row[f"{tier}_first"],
                last_captured=row[f"{tier}_last"],
            )
            for row in rows
            for tier in tiers
            if row[f"{tier}_size"]
        ),
        key=lambda g: (not g.fresh, -g.max_p_pain, g.neonate_id),
    )
    start, placed = 0, []
    for group in groups:
        placed.append(QueueGroup(**{**group.__dict__, "start": start}))
        start += group.size
    return QueueGroups(cutoff=cutoff, stale_after_minutes=stale_after_minutes, groups=placed)


def _group_q(group: QueueGroup, cutoff: datetime) -> Q:
    tier = Q(captured_at__gte=cutoff) if group.fresh else Q(captured_at__lt=cutoff)
    return Q(neonate_id=group.neonate_id) & tier


def queue_time_ordered(queryset: QuerySet, *, groups: QueueGroups) -> QuerySet:
    """``queryset`` (a queue) in dashboard order: group rank, then :data:`GROUP_ORDER`.

    A case that is in no group (it arrived after :func:`queue_groups` read them) goes last; the
    next poll places it.
    """
    if not groups.groups:
        return queryset.order_by(*GROUP_ORDER)
    rank = Case(
        *(When(_group_q(g, groups.cutoff), then=Value(i)) for i, g in enumerate(groups.groups)),
        default=Value(len(groups.groups)),
        output_field=IntegerField(),
    )
    return queryset.alias(group_rank=rank).order_by("group_rank", *GROUP_ORDER)


def queue_time_window(queryset: QuerySet, *, groups: QueueGroups, offset: int, limit: int) -> tuple[QuerySet, int]:
    """The cases ``offset`` to ``offset + limit`` of the dashboard order as ``(queryset, offset within it)``.

    Only the groups that the page cuts are read and sorted (their sizes and starts are known from
    :func:`queue_groups`): a sort of every open case of the unit by group rank cost 110-310 ms
    with 110,000 open cases (PostgreSQL, external merge sort; scripts/bench_queue.py), a page's
    one or two groups a few ms. Slice the queryset at ``[offset : offset + limit]`` with the
    returned offset.
    """
    cut = [g for g in groups.groups if g.start < offset + limit and g.start + g.size > offset]
    if not cut:
        return queue_time_ordered(queryset, groups=groups), offset
    condition = Q()
    for group in cut:
        condition |= _group_q(group, groups.cutoff)
    rank = Case(
        *(When(_group_q(g, groups.cutoff), then=Value(i)) for i, g in enumerate(cut)),
        default=Value(len(cut)),
        output_field=IntegerField(),
    )
    return queryset.filter(condition).alias(group_rank=rank).order_by("group_rank", *GROUP_ORDER), offset - cut[0].start


def queue_time_neighbours(*, user: User, case: TriageCase, groups: QueueGroups, queue: QuerySet):
    """(previous, next) case of ``case`` in dashboard order, ids only: J/K on the case page.

    Bounded work whatever the queue's length: the neighbour inside the case's own group (by its
    pain-first key), else the last case of the group before or the first of the group after.
    """
    queue = queue.exclude(pk=case.pk).select_related(None).only("id")
    own = groups.group_of(neonate_id=case.neonate_id, captured_at=case.captured_at)
    if own is None:
        return None, None
    index = groups.groups.index(own)
    in_group = queue.filter(_group_q(own, groups.cutoff))
    after = (
        Q(p_pain__lt=case.p_pain)
        | Q(p_pain=case.p_pain, created_at__gt=case.created_at)
        | Q(p_pain=case.p_pain, created_at=case.created_at, id__gt=case.pk)
    )
    following = in_group.filter(after).order_by(*GROUP_ORDER).first()
    preceding = in_group.exclude(after).order_by("p_pain", "-created_at", "-id").first()
    if following is None:
        for group in groups.groups[index + 1 :]:
            following = queue.filter(_group_q(group, groups.cutoff)).order_by(*GROUP_ORDER).first()
            if following is not None:
                break
    if preceding is None:
        for group in reversed(groups.groups[:index]):
            preceding = queue.filter(_group_q(group, groups.cutoff)).order_by("p_pain", "-created_at", "-id").first()
            if preceding is not None:
                break
    return preceding, following
