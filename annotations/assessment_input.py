"""Validating what a nurse enters for one assessment: the six items ("not observed" included) and the observation time."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError

from annotations.models import NIPS_ITEMS
from annotations.observations import SCORABLE, Method

__all__ = ["NOT_OBSERVED", "OBSERVED_AT_MAX_AGE", "OBSERVED_AT_SKEW", "nips_items_clean", "observed_at_clean"]

NOT_OBSERVED = ("x", "not_observed")
"""Form and API spellings of an item marked "not observed" (besides ``None``)."""

OBSERVED_AT_SKEW = timedelta(minutes=2)
OBSERVED_AT_MAX_AGE = timedelta(hours=24)


def nips_items_clean(
    items: dict, *, unable_to_assess: bool, method: Method = Method.UNRECORDED
) -> dict[str, int | None]:
    """Validate the six NIPS items (field errors in one ValidationError). Unable to assess: all blank.

    An item is a score, or "not observed" (``None``, ``"x"``): saying so is required, a missing
    item is an error, except the bedside items of a review from the image only (it cannot see them).
    """
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, int | None] = {}
    for name, maximum in NIPS_ITEMS.items():
        raw = items.get(name, "")
        if raw is None or raw in NOT_OBSERVED:
            cleaned[name] = None
            continue
        if raw == "":
            if not unable_to_assess and name in SCORABLE[method] and method != Method.IMAGE:
                errors[name] = ["Required. Score it, or mark it not observed."]
            cleaned[name] = None
            continue
        if isinstance(raw, bool):
            errors[name] = [f"Must be a whole number from 0 to {maximum}."]
            continue
        try:
            value = int(raw)
            if str(raw).strip() != str(value) and not isinstance(raw, int):
                raise ValueError
        except (TypeError, ValueError):
            errors[name] = [f"Must be a whole number from 0 to {maximum}."]
            continue
        if not 0 <= value <= maximum:
            errors[name] = [f"Must be from 0 to {maximum}."]
            continue
        cleaned[name] = value
    unknown = sorted(set(items) - set(NIPS_ITEMS))
    for name in unknown:
        errors[name] = ["Not a NIPS item."]
    if errors:
        raise ValidationError(errors)
    if unable_to_assess:
        # "Unable to assess" is a verdict of its own; partial scores would be mistaken for a total.
        return dict.fromkeys(NIPS_ITEMS)
    return cleaned


def observed_at_clean(observed_at, *, method: Method, frame_captured_at, now) -> object:
    """When the baby was observed: the frame's time (image only), else as given, else now (cot / video).

    Not in the future (2 minutes' clock skew allowed), not more than a day ago.
    """
    if method == Method.IMAGE:
        return frame_captured_at  # what was seen is the frame, taken then
    if observed_at is None:
        return None if method == Method.UNRECORDED else now
    if observed_at > now + OBSERVED_AT_SKEW:
        raise ValidationError({"observed_at": ["Cannot be in the future."]})
    if observed_at < now - OBSERVED_AT_MAX_AGE:
        raise ValidationError({"observed_at": ["More than a day ago: record it as a new observation."]})
    return observed_at
