"""FHIR reads, scoped to a unit: the rows behind each resource, and the Observation search.

``unit_id=None`` means every unit (a superuser); anything of another unit is simply not there, so a
read answers 404 and a search finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.db.models.functions import Coalesce

from annotations.models import NipsAssessment
from triage.models import Alert, ModelVersion, Neonate, Prediction, TriageCase, User


def _scoped(qs, field: str, unit_id: int | None):
    return qs if unit_id is None else qs.filter(**{field: unit_id})


def nips_assessments(*, unit_id: int | None):
    """NIPS scores of decided cases (a blind first score of a double-scored case waits for the second)."""
    qs = NipsAssessment.objects.select_related("case__neonate", "case__prediction__frame", "nurse").filter(
        case__status=TriageCase.Status.DECIDED
    )
    return _scoped(qs, "case__unit_id", unit_id)


def predictions(*, unit_id: int | None):
    qs = Prediction.objects.select_related("frame__neonate", "model_version")
    return _scoped(qs, "frame__unit_id", unit_id)


def neonates(*, unit_id: int | None):
    return _scoped(Neonate.objects.all(), "unit_id", unit_id)


def practitioners(*, unit_id: int | None):
    """People who may score NIPS: nurses and unit admins (never devices) of the unit."""
    qs = User.objects.exclude(role="device").filter(unit__isnull=False)
    return _scoped(qs, "unit_id", unit_id)


def devices(*, unit_id: int | None):
    """Model versions: global ones and the unit's own."""
    qs = ModelVersion.objects.all()
    return qs if unit_id is None else qs.filter(Q(unit__isnull=True) | Q(unit_id=unit_id))


def alerts(*, unit_id: int | None):
    qs = Alert.objects.select_related("neonate", "prediction__model_version", "assessment__nurse")
    return _scoped(qs, "unit_id", unit_id)


def observation_row(*, unit_id: int | None, resource_id: str):
    """The NIPS assessment (``nips-<pk>``) or prediction (``ai-<pk>``) behind an Observation id, or None."""
    kind, _, number = resource_id.partition("-")
    if not number.isdigit():
        return None
    if kind == "nips":
        return nips_assessments(unit_id=unit_id).filter(pk=int(number)).first()
    if kind == "ai":
        return predictions(unit_id=unit_id).filter(pk=int(number)).first()
    return None


@dataclass(frozen=True)
class ObservationQuery:
    """Parsed search parameters (``ehr.apis`` turns a bad one into a 400 OperationOutcome)."""

    patient: str | None = None
    codes: frozenset[str] = frozenset()
    #: (lookup, instant) pairs: ``ge2026-01-05`` is ``("gte", start of that day)`` (``ehr.apis.params``).
    date_filters: tuple[tuple[str, datetime], ...] = ()
    since: datetime | None = None


#: A nurse's effective time: when she observed the baby (bedside) if recorded, else the frame's capture.
NIPS_EFFECTIVE = Coalesce("observed_at", "case__prediction__frame__captured_at")
#: NeoPain code -> assessment kinds: a full NIPS has a total; face-only and partial reviews do not.
NIPS_CODES = {"nips-total": ("nips",), "nips-review": ("face_only", "partial")}


def _nips_filtered(unit_id: int | None, query: ObservationQuery):
    qs = nips_assessments(unit_id=unit_id).annotate(effective=NIPS_EFFECTIVE)
    if query.codes:
        qs = qs.filter(kind__in=[kind for code in query.codes for kind in NIPS_CODES.get(code, ())])
    return _filtered(
        qs, query=query, prefix="case__prediction__frame__", updated_field="created_at", time_field="effective"
    )


def _filtered(qs, *, query: ObservationQuery, prefix: str, updated_field: str, time_field: str | None = None):
    if query.patient:
        ref = query.patient.removeprefix("Patient/")
        by_mrn = Q(**{f"{prefix}neonate__mrn": query.patient})
        qs = qs.filter(by_mrn | Q(**{f"{prefix}neonate_id": int(ref)}) if ref.isdigit() else by_mrn)
    for op, value in query.date_filters:
        qs = qs.filter(**{f"{time_field or prefix + 'captured_at'}__{op}": value})
    if query.since is not None:
        qs = qs.filter(**{f"{updated_field}__gte": query.since})
    return qs


def observation_search(*, unit_id: int | None, query: ObservationQuery, offset: int, count: int):
    """One page of Observations (NIPS and model verdicts together), newest effective time first.

    Returns ``(rows, total)``: rows are NipsAssessment and Prediction objects in page order. Each
    kind's first ``offset + count`` (time, pk) pairs come from its own ordered, limited query (the
    patient search walks the frames' (neonate, captured_at) index), and are merged here; then the
    page's rows are loaded, one query per kind.
    """
    limit = offset + count
    keys: list[tuple] = []
    total = 0
    if not query.codes or query.codes & set(NIPS_CODES):
        nips = _nips_filtered(unit_id, query)
        total += nips.count()
        keys += [
            (when, "nips", pk) for pk, when in nips.order_by("-effective", "-pk").values_list("pk", "effective")[:limit]
        ]
    if not query.codes or "ai-pain-verdict" in query.codes:
        ai = _filtered(predictions(unit_id=unit_id), query=query, prefix="frame__", updated_field="created_at")
        total += ai.count()
        keys += [
            (when, "ai", pk)
            for pk, when in ai.order_by("-frame__captured_at", "-pk").values_list("pk", "frame__captured_at")[:limit]
        ]
    page = sorted(keys, reverse=True)[offset:limit]
    wanted = {kind: [pk for _, k, pk in page if k == kind] for kind in ("nips", "ai")}
    # The keys were read in the caller's scope: load by primary key alone (with the unit filter too,
    # SQLite walked the unit's frames instead of the 50 keys: 0.3 s a page at 25,000 observations).
    loaded = {}
    if wanted["nips"]:
        loaded.update({("nips", row.pk): row for row in nips_assessments(unit_id=None).filter(pk__in=wanted["nips"])})
    if wanted["ai"]:
        loaded.update({("ai", row.pk): row for row in predictions(unit_id=None).filter(pk__in=wanted["ai"])})
    return [loaded[(kind, pk)] for _, kind, pk in page], total


def export_rows(*, unit_id: int | None, since: datetime | None):
    """Every row a Bulk Data export writes, per resource type (iterators: the export streams them).

    With ``since``: Observations recorded since then, and the Patients, Practitioners and Devices that
    are new since then or that those Observations reference (a client can resolve every reference).
    """
    query = ObservationQuery(since=since)
    nips = _nips_filtered(unit_id, query)
    ai = _filtered(predictions(unit_id=unit_id), query=query, prefix="frame__", updated_field="created_at")
    patients, people, models = neonates(unit_id=unit_id), practitioners(unit_id=unit_id), devices(unit_id=unit_id)
    if since is not None:
        patients = patients.filter(
            Q(created_at__gte=since)
            | Q(pk__in=nips.values("case__neonate_id"))
            | Q(pk__in=ai.values("frame__neonate_id"))
        )
        people = people.filter(Q(date_joined__gte=since) | Q(pk__in=nips.values("nurse_id")))
        models = models.filter(Q(created_at__gte=since) | Q(pk__in=ai.values("model_version_id")))
    flags = alerts(unit_id=unit_id)
    if since is not None:
        flags = flags.filter(Q(created_at__gte=since) | Q(last_event_at__gte=since) | Q(acknowledged_at__gte=since))
    return {
        "Patient": patients.order_by("pk").iterator(chunk_size=500),
        "Practitioner": people.order_by("pk").iterator(chunk_size=500),
        "Device": models.order_by("pk").iterator(chunk_size=500),
        "Observation": _chain(nips.order_by("pk"), ai.order_by("pk")),
        "Flag": flags.order_by("pk").iterator(chunk_size=500),
    }


def _chain(*querysets):
    for qs in querysets:
        yield from qs.iterator(chunk_size=500)


__all__ = [
    "ObservationQuery",
    "alerts",
    "devices",
    "export_rows",
    "neonates",
    "nips_assessments",
    "observation_row",
    "observation_search",
    "practitioners",
    "predictions",
]
