"""FHIR search parameters: ``date`` with prefixes and partial dates, ``_count``, ``code``, ``_since``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ehr.apis.common import FhirError
from ehr.resources import CODE_SYSTEM
from ehr.selectors import ObservationQuery

DEFAULT_COUNT = 50
MAX_COUNT = 200
OBSERVATION_PARAMS = {"patient", "subject", "date", "code", "_count", "_offset", "_format", "_sort"}
_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def _bad(message: str) -> FhirError:
    return FhirError(message, status=400, code="invalid")


def date_range(value: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a FHIR date or dateTime: 2026, 2026-01, 2026-01-05 or a full instant."""
    match = _PARTIAL.match(value)
    tz = timezone.get_current_timezone()
    if match:
        year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
        try:
            start = datetime(year, month, day, tzinfo=tz)
        except ValueError:
            raise _bad(f"Not a date: {value!r}.") from None
        if match[3]:
            end = start + timedelta(days=1)
        elif match[2]:
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
        else:
            end = datetime(year + 1, 1, 1, tzinfo=tz)
        return start, end
    try:
        moment = parse_datetime(value)
    except ValueError:
        moment = None
    if moment is None:
        raise _bad(f"Not a date or dateTime: {value!r}.")
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, tz)
    return moment, moment + timedelta(seconds=1)


def date_filters(values: list[str]) -> tuple[tuple[str, datetime], ...]:
    filters: list[tuple[str, datetime]] = []
    for raw in values:
        prefix, value = (raw[:2], raw[2:]) if raw[:2] in _PREFIXES else ("eq", raw)
        start, end = date_range(value)
        if prefix == "eq":
            filters += [("gte", start), ("lt", end)]
        elif prefix == "ge":
            filters.append(("gte", start))
        elif prefix == "gt":
            filters.append(("gte", end))
        elif prefix == "le":
            filters.append(("lt", end))
        elif prefix == "lt":
            filters.append(("lt", start))
        else:
            raise _bad(f"date prefix {prefix!r} is not supported (eq, ge, gt, le, lt).")
    return tuple(filters)


def _codes(values: list[str]) -> frozenset[str]:
    codes: set[str] = set()
    for raw in values:
        for token in raw.split(","):
            system, bar, code = token.rpartition("|")
            if bar and system and system != CODE_SYSTEM:
                continue  # another system's code matches nothing here
            codes.add(code)
    return frozenset(codes) or frozenset({"none"})


def _int(params, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise _bad(f"{name} must be an integer >= {minimum}.")
    return min(int(raw), maximum) if maximum is not None else int(raw)


def observation_query(request) -> tuple[ObservationQuery, int, int]:
    """Parsed ``GET /fhir/Observation`` parameters and (offset, count); a bad value is a 400.

    Unknown parameters are ignored, as FHIR servers do by default, unless the client sends
    ``Prefer: handling=strict``.
    """
    params = request.query_params
    unknown = sorted(set(params) - OBSERVATION_PARAMS)
    if unknown and "handling=strict" in request.headers.get("Prefer", "").replace(" ", ""):
        raise _bad(f"Unsupported search parameter(s): {', '.join(unknown)}.")
    patients = params.getlist("patient") + params.getlist("subject")
    if len(patients) > 1 or (patients and not patients[0].strip()):
        raise _bad("Give one patient (an MRN or Patient/<id>).")
    query = ObservationQuery(
        patient=patients[0].strip() if patients else None,
        codes=_codes(params.getlist("code")) if params.getlist("code") else frozenset(),
        date_filters=date_filters(params.getlist("date")),
    )
    count = _int(params, "_count", DEFAULT_COUNT, minimum=1, maximum=MAX_COUNT)
    offset = _int(params, "_offset", 0, minimum=0)
    return query, offset, count


def since(request) -> datetime | None:
    raw = request.query_params.get("_since")
    if not raw:
        return None
    return date_range(raw)[0]
