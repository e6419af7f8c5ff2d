"""How a baby was observed, what each way of observing can score, and what label an observation gives.

Pure Python (no Django): the rules of issue 13's blocker 1, in one place, for the service, the
form, the export and the training-set commands.

NIPS (Lawrence et al. 1993) is scored after watching the baby for about a minute. A still image
shows the facial expression only; cry, breathing, arms, legs and arousal need the baby watched
at the cot or on video. So:

- every item may be "not observed" (``None``);
- a review "from the image only" may score the facial expression and nothing else;
- the NIPS total and the pain rule (total >= the unit's threshold) exist only for a *complete*
  observation: all six items scored, by a method that can see them all;
- anything less (a face-only review, a partial observation) carries the nurse's own pain / no
  pain call instead, and is never turned into a NIPS total.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

NIPS_ITEMS: dict[str, int] = {"face": 1, "cry": 2, "breathing": 1, "arms": 1, "legs": 1, "arousal": 1}
"""NIPS items and their maximum score (Lawrence et al. 1993); total 0-7."""

IMAGE_ITEMS: tuple[str, ...] = ("face",)
"""What a still image shows: the facial expression."""

BEDSIDE_ITEMS: tuple[str, ...] = ("cry", "breathing", "arms", "legs", "arousal")
"""What needs the baby watched (at the cot, or on video)."""


class Method(StrEnum):
    """How the baby was observed."""

    COT = "cot"
    VIDEO = "video"
    IMAGE = "image"
    # Assessments made before the method was recorded (and API clients that do not send one):
    # all six items were required then, but nobody said how the baby was seen.
    UNRECORDED = "unrecorded"


METHOD_LABELS: dict[str, str] = {
    Method.COT: "at the cot",
    Method.VIDEO: "from video",
    Method.IMAGE: "from the image only",
    Method.UNRECORDED: "method not recorded",
}

SCORABLE: dict[str, tuple[str, ...]] = {
    Method.COT: tuple(NIPS_ITEMS),
    Method.VIDEO: tuple(NIPS_ITEMS),
    Method.IMAGE: IMAGE_ITEMS,
    Method.UNRECORDED: tuple(NIPS_ITEMS),
}
"""The items each method can score; the others must be "not observed"."""


class Kind(StrEnum):
    """What an assessment is: a full NIPS, a face-only review, or a partial observation."""

    NIPS = "nips"
    FACE_ONLY = "face_only"
    PARTIAL = "partial"


KIND_LABELS: dict[str, str] = {Kind.NIPS: "NIPS", Kind.FACE_ONLY: "face only", Kind.PARTIAL: "partial observation"}


class LabelSource(StrEnum):
    """Where a training label comes from (``--label-source``)."""

    NIPS_RULE = "nips_rule"
    FACE_ITEM = "face_item"
    NURSE_CALL = "nurse_call"


LABEL_SOURCE_HELP = (
    "nips_rule (default): the pain rule on complete NIPS observations only; face_item: the facial "
    "expression item (grimace = pain), from any assessment that scored it; nurse_call: the nurse's own "
    "pain / no pain call (face-only and partial reviews, and full ones where she gave it)"
)


class ObservationError(ValueError):
    """An observation that breaks the rules; ``errors`` maps a field to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def method_parse(value: str | None) -> Method:
    """A :class:`Method` from its value; blank means :attr:`Method.UNRECORDED`."""
    if value is None or value == "":
        return Method.UNRECORDED
    try:
        return Method(value)
    except ValueError:
        raise ObservationError({"method": [f"Must be one of {', '.join(m.value for m in Method)}."]}) from None


def observed_items(items: dict[str, int | None]) -> tuple[str, ...]:
    """The items scored (not "not observed"), in NIPS order."""
    return tuple(name for name in NIPS_ITEMS if items.get(name) is not None)


def observation_check(method: Method, items: dict[str, int | None]) -> None:
    """Raise :class:`ObservationError` when ``method`` cannot see an item that was scored, or nothing was."""
    errors: dict[str, list[str]] = {}
    allowed = SCORABLE[method]
    for name in observed_items(items):
        if name not in allowed:
            errors[name] = [f"Cannot be seen {METHOD_LABELS[method]}: mark it not observed, or observe the baby."]
    if not observed_items(items):
        errors["face"] = ["Score at least the facial expression, or mark the case unable to assess."]
    if errors:
        raise ObservationError(errors)


def observation_kind(method: Method, items: dict[str, int | None]) -> Kind:
    """Full NIPS when all six items were scored by a method that sees them; face only; else partial."""
    scored = observed_items(items)
    if len(scored) == len(NIPS_ITEMS) and set(scored) <= set(SCORABLE[method]):
        return Kind.NIPS
    if scored == IMAGE_ITEMS:
        return Kind.FACE_ONLY
    return Kind.PARTIAL


def observation_complete(method: Method, items: dict[str, int | None]) -> bool:
    return observation_kind(method, items) == Kind.NIPS


def nips_total(method: Method, items: dict[str, int | None]) -> int | None:
    """The NIPS total of a complete observation; ``None`` for anything less (never a partial sum)."""
    if not observation_complete(method, items):
        return None
    return sum(int(items[name]) for name in NIPS_ITEMS)  # type: ignore[arg-type]


def pain_by_rule(total: int | None, threshold: int) -> bool | None:
    """The unit's pain rule (total >= ``threshold``, 3 in the seed paper); ``None`` without a total."""
    return None if total is None else total >= threshold


@dataclass(frozen=True)
class Verdict:
    """What one assessment says, and from where."""

    kind: Kind
    total: int | None
    pain_by_rule: bool | None
    pain: bool | None
    """The verdict that decides the case: the rule for a full NIPS, else the nurse's call."""


def observation_verdict(
    method: Method, items: dict[str, int | None], *, threshold: int, nurse_call: bool | None
) -> Verdict:
    """The kind, total, rule verdict and case verdict of one observation.

    A full NIPS is decided by the rule (the nurse's call, if she gave one, is kept beside it); a
    face-only or partial review needs the nurse's call (:class:`ObservationError` without it).
    """
    observation_check(method, items)
    kind = observation_kind(method, items)
    total = nips_total(method, items)
    rule = pain_by_rule(total, threshold)
    if kind != Kind.NIPS and nurse_call is None:
        raise ObservationError(
            {"nurse_call": [f"{_KIND_PHRASES[kind]} has no NIPS total: give your own pain / no pain call."]}
        )
    return Verdict(kind=kind, total=total, pain_by_rule=rule, pain=rule if kind == Kind.NIPS else nurse_call)


_KIND_PHRASES = {Kind.FACE_ONLY: "A face-only review", Kind.PARTIAL: "An observation that left items unobserved"}


def label_for(
    source: LabelSource,
    *,
    kind: str,
    face: int | None,
    pain_by_rule: bool | None,
    nurse_call: bool | None,
    unable: bool = False,
) -> bool | None:
    """The training label one assessment gives under ``source``; ``None`` when it gives none.

    ``nips_rule`` comes only from complete observations; a face-only review never gives one.
    """
    if unable:
        return None
    if source == LabelSource.NIPS_RULE:
        return pain_by_rule if kind == Kind.NIPS else None
    if source == LabelSource.FACE_ITEM:
        return None if face is None else face >= 1
    return nurse_call
