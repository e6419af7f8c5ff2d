"""Reads for the nurse UI and API: the queue, a case, the export rows, workload estimates.

Querysets are scoped by the caller's unit here, once, so views and APIs cannot forget it.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta

from django.db.models import Count, F, IntegerField, Max, Min, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from annotations.models import NipsAssessment
from triage.models import Alert, Neonate, Prediction, TriageCase, Unit, User

QUEUE_ORDER = ("confidence", "created_at", "id")
"""Most uncertain first (lowest confidence of the predicted class), oldest first among equals."""

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
    qs = _scope(case_queryset(), user)
    if unit is not None:
        qs = qs.filter(unit=unit)
    if status == "open":
        qs = qs.filter(status__in=[TriageCase.Status.OPEN, TriageCase.Status.CLAIMED])
    elif status in TriageCase.Status.values:
        qs = qs.filter(status=status)
    if user.role == "nurse":
        qs = qs.exclude(assessments__nurse=user)
    if status == TriageCase.Status.DECIDED:
        return qs.order_by("-decided_at", "-id")
    return qs.order_by(*QUEUE_ORDER)


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


def queue_fingerprint(cases) -> str:
    """Changes when the queue's rows, order or holders change: a live poll that sees the same one skips the swap."""
    digest = hashlib.sha256()
    for case in cases:
        done = getattr(case, "assessments_done", "")
        digest.update(f"{case.pk}:{case.status}:{case.claimed_by_id}:{case.claim_is_live()}:{done};".encode())
    return digest.hexdigest()[:16]


def queue_fingerprint_of(queryset: QuerySet, *, limit: int) -> str:
    """:func:`queue_fingerprint` of the first ``limit`` cases of ``queryset`` from one narrow query.

    For the dashboard's poll (every few seconds per open screen): five columns of one table, no
    joins to plan and no model instances, instead of fetching and building the whole page to
    find that nothing changed (~3 ms vs ~35 ms for 200 cases; scripts/bench_queue.py).
    """
    rows = queryset.annotate(assessments_done=assessments_done()).values_list(
        "pk", "status", "claimed_by_id", "claim_expires_at", "assessments_done"
    )[:limit]
    now = timezone.now()
    digest = hashlib.sha256()
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


def case_neighbours(*, user: User, case: TriageCase) -> tuple[TriageCase | None, TriageCase | None]:
    """(previous, next) open case in queue order, for J/K."""
    queue = queue_for_nurse(user=user).exclude(pk=case.pk)
    key_after = (
        Q(confidence__gt=case.confidence)
        | Q(confidence=case.confidence, created_at__gt=case.created_at)
        | Q(confidence=case.confidence, created_at=case.created_at, id__gt=case.pk)
    )
    following = queue.filter(key_after).first()
    preceding = queue.exclude(key_after).order_by("-confidence", "-created_at", "-id").first()
    return preceding, following


def assessments_visible(*, user: User, case: TriageCase) -> list[NipsAssessment]:
    """Blind double scoring: before the case is decided a nurse sees only her own assessment."""
    rows = list(case.assessments.all())
    if case.status == TriageCase.Status.DECIDED:
        return rows
    return [a for a in rows if a.nurse_id == user.pk]


def alerts_for_unit(*, user: User, unit: Unit | None = None, include_acknowledged_hours: int = 24) -> QuerySet:
    """Open alerts first (newest first), then those acknowledged within the last hours."""
    since = timezone.now() - timedelta(hours=include_acknowledged_hours)
    qs = _scope(Alert.objects.all(), user)
    if unit is not None:
        qs = qs.filter(unit=unit)
    return (
        qs.filter(Q(acknowledged_at__isnull=True) | Q(acknowledged_at__gte=since))
        .select_related("neonate", "acknowledged_by", "assessment", "prediction")
        .order_by(F("acknowledged_at").desc(nulls_first=True), "-last_event_at", "-id")
    )


def alerts_fingerprint(alerts) -> str:
    digest = hashlib.sha256()
    for alert in alerts:
        digest.update(f"{alert.pk}:{alert.suppressed_count}:{alert.acknowledged_at}:{alert.last_event_at};".encode())
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
    """Predictions, assessments and alerts of one neonate in a time window (three queries)."""
    predictions = list(
        Prediction.objects.filter(frame__neonate=neonate, frame__captured_at__gte=since, frame__captured_at__lte=until)
        .select_related("frame", "model_version")
        .order_by("-frame__captured_at")[:limit]
    )
    predictions.reverse()
    assessments = list(
        NipsAssessment.objects.filter(case__neonate=neonate, created_at__gte=since, created_at__lte=until)
        .select_related("nurse", "case")
        .order_by("created_at")
    )
    alerts = list(
        Alert.objects.filter(neonate=neonate, created_at__gte=since, created_at__lte=until).order_by("created_at")
    )
    return {"predictions": predictions, "assessments": assessments, "alerts": alerts}


def threshold_workload_estimate(*, unit: Unit, days: int = 7, thresholds=WORKLOAD_THRESHOLDS, now=None) -> dict:
    """Expected daily nurse cases and automatic pain verdicts at each threshold, from recent predictions.

    One aggregate query (conditional counts per threshold), however many predictions there are.
    Automatic pain verdicts are counted before the alert cooldown merges repeats, so they are an
    upper bound on pages to the pain team. The rate divides by the days actually covered (at most
    ``days``), so a unit that started yesterday is not under-estimated seven-fold.
    """
    now = now or timezone.now()
    since = now - timedelta(days=days)
    aggregates = {"n": Count("id"), "first": Min("created_at"), "last": Max("created_at")}
    for i, t in enumerate(thresholds):
        aggregates[f"nurse_{i}"] = Count("id", filter=Q(confidence__lt=t))
        aggregates[f"auto_pain_{i}"] = Count("id", filter=Q(confidence__gte=t, label=Prediction.Label.PAIN))
    row = Prediction.objects.filter(frame__unit=unit, created_at__gte=since, created_at__lte=now).aggregate(
        **aggregates
    )
    n = row["n"] or 0
    covered_days = float(days)
    if n and row["first"] is not None:
        covered_days = min(float(days), max(1.0, (now - row["first"]).total_seconds() / 86400))
    rows = []
    for i, t in enumerate(thresholds):
        nurse = row[f"nurse_{i}"] or 0
        auto_pain = row[f"auto_pain_{i}"] or 0
        rows.append(
            {
                "threshold": t,
                "nurse_per_day": nurse / covered_days if n else 0.0,
                "auto_pain_per_day": auto_pain / covered_days if n else 0.0,
                "nurse_share": nurse / n if n else None,
            }
        )
    return {"n": n, "days": covered_days, "window_days": days, "rows": rows}


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
