"""CSV export of NIPS assessments: one row per assessment, streamed, safe to open in a spreadsheet.

- Columns are a contract (``EXPORT_COLUMNS``), in this order.
- Text cells that a spreadsheet would evaluate as a formula (first character ``=``, ``+``, ``-``,
  ``@``, tab or carriage return) get a leading apostrophe. Numeric cells are formatted here and are
  never negative, so they are left alone.
- UTF-8. No byte-order mark by default (scripts, pandas and ``csv`` read it cleanly); ``bom=True``
  (``?bom=1``, the UI's "for Excel" box) prepends one so Excel shows accented names correctly.
- Times are ISO 8601 in UTC with a ``Z``; probabilities have four decimals; pain is ``true``/``false``
  (blank when the nurse was unable to assess). The export has no unable/intubated columns, so those
  facts are prefixed to the note cell ("Unable to assess: ..." / "Intubated: silent cry scored").
- How the baby was observed (issue 13): ``kind`` is ``nips``, ``face only``, ``partial observation``
  or ``unable to assess``; an item not observed is blank, and ``nips_total`` is blank unless all six
  were observed (a face-only review is never a NIPS total). ``observation_method``: ``at the cot``,
  ``from video``, ``from the image only`` or ``method not recorded`` (rows from before it was
  asked). ``nurse_call``: the nurse's own pain / no pain call, the verdict of a review without a total.
  Appended after ``assessed_at``, so readers of the older 21 columns by position keep working.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from annotations.models import NipsAssessment

EXPORT_COLUMNS = [
    "assessment_id",
    "neonate_mrn",
    "frame_id",
    "captured_at",
    "model_version",
    "p_pain",
    "confidence",
    "threshold",
    "routed_to",
    "nurse",
    "face",
    "cry",
    "breathing",
    "arms",
    "legs",
    "arousal",
    "nips_total",
    "pain",
    "rule",
    "note",
    "assessed_at",
    "kind",
    "observation_method",
    "observed_at",
    "nurse_call",
]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
UTF8_BOM = "\ufeff"


def neutralise(value: str) -> str:
    """Defuse spreadsheet formula injection (CSV injection): a leading apostrophe makes it text."""
    if value and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _prob(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _int(value: int | None) -> str:
    return "" if value is None else str(int(value))


def _bool(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


def _note(assessment: NipsAssessment) -> str:
    parts = []
    if assessment.unable_to_assess:
        parts.append(f"Unable to assess: {assessment.unable_reason}")
    if assessment.intubated:
        parts.append("Intubated: silent cry scored")
    if assessment.note:
        parts.append(assessment.note)
    return " | ".join(parts)


def export_row(assessment: NipsAssessment) -> list[str]:
    case = assessment.case
    prediction = case.prediction
    frame = prediction.frame
    text = neutralise
    return [
        str(assessment.pk),
        text(case.neonate.mrn),
        str(frame.pk),
        _utc(frame.captured_at),
        text(prediction.model_version.label),
        _prob(prediction.p_pain),
        _prob(prediction.confidence),
        _prob(prediction.threshold),
        text(prediction.routed_to),
        text(assessment.nurse.get_username()),
        _int(assessment.face),
        _int(assessment.cry),
        _int(assessment.breathing),
        _int(assessment.arms),
        _int(assessment.legs),
        _int(assessment.arousal),
        _int(assessment.total),
        _bool(assessment.pain if assessment.kind == "nips" else None),
        text(assessment.rule),
        text(_note(assessment)),
        _utc(assessment.created_at),
        text(assessment.kind_label),
        text(assessment.method_label),
        _utc(assessment.observed_at),
        _bool(assessment.nurse_call),
    ]


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a generator."""

    def write(self, value: str) -> str:
        return value


def export_lines(assessments: Iterable[NipsAssessment], *, bom: bool = False) -> Iterator[str]:
    """The CSV, one encoded-ready line at a time (header first)."""
    writer = csv.writer(_Echo(), lineterminator="\r\n")
    header = writer.writerow(EXPORT_COLUMNS)
    yield (UTF8_BOM + header) if bom else header
    for assessment in assessments:
        yield writer.writerow(export_row(assessment))
