"""Reads for the nurse UI and API: the queue, a case, the export rows, workload estimates.

Querysets are scoped by the caller's unit here, once, so views and APIs cannot forget it.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta

from django.core.paginator import Paginator
from django.db.models import Case, Count, F, IntegerField, Min, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.functional import cached_property

from annotations.models import NipsAssessment
from triage.models import Alert, Neonate, Prediction, TriageCase, Unit, User

QUEUE_ORDER = ("-p_pain", "created_at", "id")
"""Pain first: highest p(pain) first, so a likely-pain frame is never behind unlikely ones; oldest first among equals."""

WORKLOAD_THRESHOLDS = tuple(round(0.50 + 0.05 * i, 2) for i in range(10))  # 0.50 .. 0.95


def unit_ids_for(user: User) -> list[int] | None:
    """The units ``user`` may read: ``None`` means all (superuser), ``[]`` none."""
    if user.is_superuser:
        return None
    return [user.unit_id] if user.unit_id else []


def _scope(queryset: QuerySet, user: User, field: str = "unit") -> QuerySet:
    ids = unit_ids_for(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{field}__in": ids})


def case_queryset() -> QuerySet:
    return TriageCase.objects.select_related(
        "prediction__model_version", "prediction__frame", "neonate", "unit", "claimed_by"
    )


def queue_for_nurse(*, user: User, status: str = "open", unit: Unit | None = None) -> QuerySet:
    """The cases waiting for a nurse in ``user``'s unit, in queue order.

    ``open`` means not yet decided (claimed cases stay in the queue with their holder shown).
    A nurse never sees a double-scored case she already scored (blind second scoring).
    """
    qs = _queue_filter(_scope(case_queryset(), user), status=status, unit=unit)
    if user.role == "nurse":
        qs = qs.exclude(assessments__nurse=user)
    if status == TriageCase.Status.DECIDED:
        return qs.order_by("-decided_at", "-id")
    return qs.order_by(*QUEUE_ORDER)


def queue_count(*, user: User, status: str = "open", unit: Unit | None = None) -> int:
    """How many cases :func:`queue_for_nurse` holds, read off the queue's index.

    Blind scoring excludes the cases she scored with ``NOT IN`` (her assessments hashed once), not
    the queue's ``NOT EXISTS``: for a count PostgreSQL may plan that anti-join in parallel, which on
    2 cores took 9-13 ms instead of ~2.3 ms (5,000 open cases, 1M predictions; ~12 ms at 110,000).
    The queue's pages keep ``NOT EXISTS``: it probes only the rows a page reads.
    """
    qs = _queue_filter(_scope(TriageCase.objects.all(), user), status=status, unit=unit)
    if user.role == "nurse":
        qs = qs.exclude(pk__in=NipsAssessment.objects.filter(nurse=user).values("case_id"))
    return qs.order_by().count()


def _queue_filter(qs: QuerySet, *, status: str, unit: Unit | None) -> QuerySet:
    if unit is not None:
        qs = qs.filter(unit=unit)
    if status == "open":
        return qs.filter(status__in=[TriageCase.Status.OPEN, TriageCase.Status.CLAIMED])
    if status in TriageCase.Status.values:
        return qs.filter(status=status)
    return qs


def assessments_done():
    """``.annotate(assessments_done=assessments_done())``: assessments per case, as a correlated subquery.

    Not ``Count("assessments")``: that joins and GROUPs BY every selected column, so PostgreSQL
    aggregates and sorts every open case of the unit before it can take the first page, instead
    of reading the page off the ``case_queue_open`` index (~200 ms vs ~5 ms with 1M predictions).
    """
    per_case = (
        NipsAssessment.objects.filter(case=OuterRef("pk")).order_by().values("case").annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(per_case[:1], output_field=IntegerField()), Value(0))


def queue_page_ids(queryset: QuerySet, *, offset: int, limit: int) -> list[int]:
    """The ids of cases ``offset`` to ``offset + limit`` of a queue queryset: step one of a page.

    Step two, :func:`queue_values`, reads those rows by primary key. As one query, PostgreSQL spent
    7-11 ms *planning* the seven-table join under ORDER BY ... LIMIT (it searches join orders for a
    sorted, limited result) and joined every skipped row of a deep page; the ids alone come off the
    ``case_queue_open`` index from one table, and the join by id plans in ~1 ms (1M predictions,
    scripts/bench_queue.py).
    """
    return list(queryset.values_list("pk", flat=True)[offset : offset + limit])


def queue_values(ids: list[int], *, values: tuple[str, ...]) -> list[dict]:
    """``.values("id", *values, "assessments_done")`` of the cases ``ids``, in the order of ``ids``.

    A page's rows as columns: no model instances (seven a row with the relations a row shows,
    ~70 us a row), no model's metrics JSON or user's password hash read. A case decided since
    :func:`queue_page_ids` is left out rather than shown stale.
    """
    if not ids:
        return []
    rows = (
        TriageCase.objects.filter(pk__in=ids)
        .annotate(assessments_done=assessments_done())
        .values("id", *values, "assessments_done")
    )
    by_id = {row["id"]: row for row in rows}
    return [by_id[pk] for pk in ids if pk in by_id]


def queue_after(queryset: QuerySet, *, case: TriageCase) -> QuerySet:
    """The cases of a queue queryset that come after ``case`` in its order (keyset: a cursor, not an offset).

    An offset makes the database read and skip every case before the page; this starts the index
    scan at ``case``'s place (the leading ``>=`` bound), so the 2,000th page costs what the first
    does. ``case`` need not be in the queue any more (decided since): its sort key still places it.
    Raises ``ValueError`` when ``case`` has no place in this order (a decided order and an open case).
    """
    keys = [(name.lstrip("-"), name.startswith("-")) for name in queryset.query.order_by]
    values = {field: getattr(case, field) for field, _ in keys}
    if any(value is None for value in values.values()):
        raise ValueError("This case has no place in this queue's order.")
    after = Q()
    for i, (field, descending) in enumerate(keys):
        equal_before = {name: values[name] for name, _ in keys[:i]}
        after |= Q(**equal_before, **{f"{field}__{'lt' if descending else 'gt'}": values[field]})
    first, descending = keys[0]
    return queryset.filter(Q(**{f"{first}__{'lte' if descending else 'gte'}": values[first]}), after)


def case_for_cursor(*, user: User, pk: int) -> TriageCase | None:
    """A case of the caller's unit, with its sort keys only, to continue a queue after it; ``None`` if none."""
    fields = ("p_pain", "confidence", "created_at", "decided_at")
    return _scope(TriageCase.objects.only(*fields), user).filter(pk=pk).first()


class QueuePaginator(Paginator):
    """Django's paginator over a queue queryset whose size is known (:func:`queue_count`).

    Each page is its ids (:func:`queue_page_ids`) turned into what the page shows by ``rows``.
    """

    def __init__(self, object_list, per_page, *args, count: int, rows, **kwargs):
        super().__init__(object_list, per_page, *args, **kwargs)
        self.known_count = count
        self.rows = rows

    @cached_property
    def count(self) -> int:
        return self.known_count

    def page(self, number):
        number = self.validate_number(number)
        offset = (number - 1) * self.per_page
        limit = self.per_page
        if offset + limit + self.orphans >= self.count:
            limit = self.count - offset
        return self._get_page(self.rows(queue_page_ids(self.object_list, offset=offset, limit=limit)), number, self)


FINGERPRINT_VALUES = ("status", "claimed_by_id", "claim_expires_at")
"""With ``id`` and ``assessments_done``: what :func:`queue_fingerprint` reads of a row."""


def queue_fingerprint(rows, *, total: int | None = None) -> str:
    """Changes when the queue's rows, order, holders or size change: a live poll that sees the same one skips the swap.

    ``rows`` are :func:`queue_values` rows with :data:`FINGERPRINT_VALUES`. ``total`` (how many
    cases wait in all) is part of it, so "N more waiting" never goes stale while the rows shown
    stay the same.
    """
    return _fingerprint(
        (
            (row["id"], row["status"], row["claimed_by_id"], row["claim_expires_at"], row["assessments_done"])
            for row in rows
        ),
        total=total,
    )


def queue_fingerprint_of(queryset: QuerySet, *, limit: int, offset: int = 0, total: int | None = None) -> str:
    """:func:`queue_fingerprint` of cases ``offset`` to ``offset + limit`` of ``queryset`` from one narrow query.

    For the dashboard's poll (every few seconds per open screen): five columns of one table, no
    joins to plan and no model instances, instead of fetching and rendering the whole page to
    find that nothing changed (scripts/bench_queue.py).
    """
    rows = queryset.annotate(assessments_done=assessments_done()).values_list(
        "pk", "status", "claimed_by_id", "claim_expires_at", "assessments_done"
    )[offset : offset + limit]
    return _fingerprint(rows, total=total)


def _fingerprint(rows, *, total: int | None) -> str:
    now = timezone.now()
    digest = hashlib.sha256(f"total:{total};".encode())
    for pk, status, holder, expires, done in rows:
        live = bool(holder and expires and expires > now)  # TriageCase.claim_is_live
        digest.update(f"{pk}:{status}:{holder}:{live}:{done};".encode())
    return digest.hexdigest()[:16]


def case_get(*, user: User, pk: int) -> TriageCase:
    """One case of the caller's unit, else 404 (another unit's case is indistinguishable from none)."""
    case = (
        _scope(case_queryset(), user)
        .prefetch_related(
            Prefetch("assessments", queryset=NipsAssessment.objects.select_related("nurse").order_by("created_at"))
        )
        .filter(pk=pk)
        .first()
    )
    if case is None:
        raise Http404("No such case.")
    return case


def cases_free_for(*, user: User, cases: QuerySet) -> QuerySet:
    """``cases`` without those another nurse's live claim holds (hers, unclaimed and lapsed stay)."""
    held_by_other = Q(claimed_by__isnull=False, claim_expires_at__gt=timezone.now()) & ~Q(claimed_by=user)
    return cases.exclude(held_by_other)


def case_neighbours(*, user: User, case: TriageCase) -> tuple[TriageCase | None, TriageCase | None]:
    """(previous, next) open case in queue order, for J/K (their ids only: the page links to them).

    Cases another nurse holds now are skipped: J lands only on a case she can score.
    """
    queue = cases_free_for(user=user, cases=queue_for_nurse(user=user).exclude(pk=case.pk))
    queue = queue.select_related(None).only("id")
    key_after = (
        Q(p_pain__lt=case.p_pain)
        | Q(p_pain=case.p_pain, created_at__gt=case.created_at)
        | Q(p_pain=case.p_pain, created_at=case.created_at, id__gt=case.pk)
    )
    following = queue.filter(key_after).first()
    preceding = queue.exclude(key_after).order_by("p_pain", "-created_at", "-id").first()
    return preceding, following


def assessments_visible(*, user: User, case: TriageCase) -> list[NipsAssessment]:
    """Blind double scoring: before the case is decided a nurse sees only her own assessment."""
    rows = list(case.assessments.all())
    if case.status == TriageCase.Status.DECIDED:
        return rows
    return [a for a in rows if a.nurse_id == user.pk]


ALERT_SEVERE_NIPS = 5
"""NIPS total from which a nurse-confirmed alert is severe pain (clinical guides: 3-4 mild to moderate, >= 5 severe)."""


def alerts_for_unit(*, user: User, unit: Unit | None = None, include_acknowledged_hours: int = 24) -> QuerySet:
    """Open alerts, most severe first; then those acknowledged within the last hours, newest first.

    Open alerts are ranked by ``severity`` (3: nurse-confirmed NIPS >= 5, severe pain; 2: nurse-
    confirmed pain below that; 1: automatic, the model's pain not yet seen by a nurse), then the
    NIPS total, then the one waiting longest first: escalation goes by waiting time, so should
    the eye. Each row carries what its card shows (scorer, items, frame time, case) in one query.
    """
    since = timezone.now() - timedelta(hours=include_acknowledged_hours)
    qs = _scope(Alert.objects.all(), user)
    if unit is not None:
        qs = qs.filter(unit=unit)
    severity = Case(
        When(source=Alert.Source.NURSE, assessment__total__gte=ALERT_SEVERE_NIPS, then=Value(3)),
        When(source=Alert.Source.NURSE, then=Value(2)),
        default=Value(1),
        output_field=IntegerField(),
    )
    return (
        qs.filter(Q(acknowledged_at__isnull=True) | Q(acknowledged_at__gte=since))
        .select_related(
            "neonate",
            "acknowledged_by",
            "assessment__nurse",
            "prediction__frame",
            "prediction__model_version",
            "prediction__case",
        )
        .annotate(severity=severity)
        .order_by(
            F("acknowledged_at").desc(nulls_first=True),
            "-severity",
            F("assessment__total").desc(nulls_last=True),
            "created_at",
            "-id",
        )
    )


def alerts_fingerprint(alerts) -> str:
    digest = hashlib.sha256()
    for alert in alerts:
        digest.update(
            f"{alert.pk}:{alert.suppressed_count}:{alert.acknowledged_at}:{alert.last_event_at}:{alert.escalated_at};".encode()
        )
    return digest.hexdigest()[:16]


def alert_get(*, user: User, pk: int) -> Alert:
    alert = _scope(Alert.objects.select_related("neonate", "unit"), user).filter(pk=pk).first()
    if alert is None:
        raise Http404("No such alert.")
    return alert


def neonate_get(*, user: User, pk: int) -> Neonate:
    neonate = _scope(Neonate.objects.select_related("unit"), user).filter(pk=pk).first()
    if neonate is None:
        raise Http404("No such neonate.")
    return neonate


def neonates_for_unit(*, user: User) -> QuerySet:
    return (
        _scope(Neonate.objects.filter(active=True), user)
        .annotate(
            open_cases=Count("cases", filter=Q(cases__status__in=["open", "claimed"]), distinct=True),
            open_alerts=Count("alerts", filter=Q(alerts__acknowledged_at__isnull=True), distinct=True),
        )
        .order_by("bed", "mrn")
    )


def neonate_timeline(*, neonate: Neonate, since: datetime, until: datetime, limit: int = 2000) -> dict:
    """Predictions, assessments and alerts of one neonate in a time window (three queries).

    Assessments are placed by the frame's capture time (annotations/timeline_chart.py), not by the
    moment the nurse submitted the form.
    """
    predictions = list(
        Prediction.objects.filter(frame__neonate=neonate, frame__captured_at__gte=since, frame__captured_at__lte=until)
        .select_related("frame", "model_version")
        .order_by("-frame__captured_at")[:limit]
    )
    predictions.reverse()
    # Assessments by the time of the frame they score (what the chart plots), or submitted in the window.
    assessments = list(
        NipsAssessment.objects.filter(case__neonate=neonate)
        .filter(
            Q(case__captured_at__gte=since, case__captured_at__lte=until) | Q(created_at__gte=since, created_at__lte=until)
        )
        .select_related("nurse", "case")
        .order_by("case__captured_at", "created_at")
    )
    # Alerts raised in the window, and those acknowledged in it (the intervention their note records).
    alerts = list(
        Alert.objects.filter(neonate=neonate)
        .filter(Q(created_at__gte=since, created_at__lte=until) | Q(acknowledged_at__gte=since, acknowledged_at__lte=until))
        .select_related("acknowledged_by")
        .order_by("created_at")
    )
    return {"predictions": predictions, "assessments": assessments, "alerts": alerts}


def threshold_workload_estimate(
    *,
    unit: Unit,
    model_version=None,
    audit_share: float = 0.0,
    days: int = 7,
    thresholds=WORKLOAD_THRESHOLDS,
    now=None,
) -> dict:
    """Expected daily nurse cases and automatic pain verdicts at each threshold, routed as ``model_version`` routes.

    One aggregate query (conditional counts per threshold), however many predictions there are.
    The counts come from the active model's own predictions when it has any in the window (another
    model's confidences say little about this one's); else from every recent prediction, and
    ``source`` says so. A bootstrap model never decides alone (``prediction_route``): every frame
    goes to a nurse at every threshold. Above the threshold, ``audit_share`` of the automatic
    verdicts also go to a nurse (blind audit cases). ``actual_nurse_share`` is what was really
    routed to nurses in the window, to read the estimate against. Automatic pain verdicts are
    counted before the alert rule merges repeats (an upper bound on pages). The rate divides by the
    days actually covered (at most ``days``), so a unit that started yesterday is not
    under-estimated seven-fold.
    """
    now = now or timezone.now()
    since = now - timedelta(days=days)
    own = Q(model_version=model_version) if model_version is not None else Q()
    aggregates = {
        "n_all": Count("id"),
        "first_all": Min("created_at"),
        "nurse_all": Count("id", filter=Q(routed_to=Prediction.Route.NURSE)),
        "n_own": Count("id", filter=own),
        "first_own": Min("created_at", filter=own),
        "nurse_own": Count("id", filter=own & Q(routed_to=Prediction.Route.NURSE)),
    }
    for i, t in enumerate(thresholds):
        for key, scope in (("all", Q()), ("own", own)):
            aggregates[f"below_{key}_{i}"] = Count("id", filter=scope & Q(confidence__lt=t))
            aggregates[f"auto_pain_{key}_{i}"] = Count(
                "id", filter=scope & Q(confidence__gte=t, label=Prediction.Label.PAIN)
            )
    row = Prediction.objects.filter(frame__unit=unit, created_at__gte=since, created_at__lte=now).aggregate(
        **aggregates
    )
    key = "own" if model_version is not None and row["n_own"] else "all"
    n = row[f"n_{key}"] or 0
    never_auto = bool(model_version is not None and model_version.is_bootstrap)
    covered_days = float(days)
    if n and row[f"first_{key}"] is not None:
        covered_days = min(float(days), max(1.0, (now - row[f"first_{key}"]).total_seconds() / 86400))
    rows = []
    for i, t in enumerate(thresholds):
        below = row[f"below_{key}_{i}"] or 0
        auto_pain = row[f"auto_pain_{key}_{i}"] or 0
        if never_auto:
            nurse, auto_pain = float(n), 0
        else:
            nurse = below + (n - below) * float(audit_share or 0.0)
        rows.append(
            {
                "threshold": t,
                "nurse_per_day": nurse / covered_days if n else 0.0,
                "auto_pain_per_day": auto_pain / covered_days if n else 0.0,
                "nurse_share": nurse / n if n else None,
            }
        )
    return {
        "n": n,
        "days": covered_days,
        "window_days": days,
        "rows": rows,
        "source": "active" if key == "own" else "all",
        "never_auto": never_auto,
        "audit_share": float(audit_share or 0.0),
        "actual_nurse_share": (row[f"nurse_{key}"] or 0) / n if n else None,
    }


def _day_start(d: date) -> datetime:
    return timezone.make_aware(datetime.combine(d, time.min), timezone.get_current_timezone())


def assessments_for_export(
    *, units: list[int] | None, date_from: date | None = None, date_to: date | None = None, mrn: str = "", as_of=None
) -> QuerySet:
    """Assessment rows for the CSV, oldest first. ``units=None``: every unit. Dates are inclusive, local time."""
    qs = NipsAssessment.objects.select_related(
        "nurse", "case__neonate", "case__prediction__frame", "case__prediction__model_version"
    )
    if units is not None:
        qs = qs.filter(case__unit_id__in=units)
    if date_from:
        qs = qs.filter(created_at__gte=_day_start(date_from))
    if date_to:
        qs = qs.filter(created_at__lt=_day_start(date_to + timedelta(days=1)))
    if mrn:
        qs = qs.filter(case__neonate__mrn=mrn)
    if as_of is not None:
        qs = qs.filter(created_at__lte=as_of)
    return qs.order_by("created_at", "id")


def live_accuracy(*, unit: Unit, model_version) -> dict:
    """The model's live accuracy against nurse verdicts on ``unit``'s decided cases, two ways apart.

    ``audit``: blind audit cases (a random share of automatic verdicts, the nurse not shown the
    model's verdict), an unbiased estimate of accuracy on the frames the model decides by itself.
    ``uncertain``: the cases the model routed to a nurse because it was unsure, the hard cases,
    biased low. Each ``{"n", "accuracy"}`` (accuracy None when n is 0); one query.
    """
    decided = TriageCase.objects.filter(
        unit=unit, status=TriageCase.Status.DECIDED, final_pain__isnull=False, prediction__model_version=model_version
    )
    model_pain = Q(prediction__label=Prediction.Label.PAIN)
    right = (model_pain & Q(final_pain=True)) | (~model_pain & Q(final_pain=False))
    counts = decided.aggregate(
        n_audit=Count("pk", filter=Q(is_audit=True)),
        right_audit=Count("pk", filter=Q(is_audit=True) & right),
        n_uncertain=Count("pk", filter=Q(is_audit=False)),
        right_uncertain=Count("pk", filter=Q(is_audit=False) & right),
    )
    return {
        kind: {
            "n": counts[f"n_{kind}"],
            "accuracy": counts[f"right_{kind}"] / counts[f"n_{kind}"] if counts[f"n_{kind}"] else None,
        }
        for kind in ("audit", "uncertain")
    }
