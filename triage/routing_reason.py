"""Why a frame went to a nurse or was decided by the model: the one place that words it.

The case page, the meter beside it and any other page that explains a routing take their words
and their band from :func:`routing_reason`, so the sentence can never contradict the numbers
(issue 13: "confidence 0.58, below the threshold 0.55"; p = 0.50 called a lean towards no pain).
The rule it explains is :func:`triage.services.predictions.prediction_route`: an automatic verdict
when confidence >= threshold, except for the bootstrap model, which never decides alone.
"""

from __future__ import annotations

from dataclasses import dataclass

ROUTE_AUTO = "auto"
ROUTE_NURSE = "nurse"


@dataclass(frozen=True)
class RoutingReason:
    """What to say about one prediction's routing, and the meter's bands in p(pain)."""

    decided_by: str
    """``"model"`` (automatic verdict) or ``"nurse"``."""
    lean: str
    """``"pain"``, ``"no pain"`` or ``"undecided"`` (p(pain) exactly 0.5)."""
    headline: str
    text: str
    band_low: float
    """The nurse band on the p(pain) meter: p strictly between ``band_low`` and ``band_high`` goes to a nurse."""
    band_high: float
    band_label: str

    @property
    def band_width(self) -> float:
        return self.band_high - self.band_low


def _pair(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with as many decimals as it takes (2 to 4) for the printed order to match the true one."""
    for digits in (2, 3, 4):
        left, right = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if (left == right) == (a == b) and (float(left) < float(right)) == (a < b):
            return left, right
    return f"{a:.4f}", f"{b:.4f}"


def _lean(p_pain: float) -> str:
    if p_pain > 0.5:
        return "pain"
    if p_pain < 0.5:
        return "no pain"
    return "undecided"


def _lean_words(p_pain: float) -> str:
    p_text, half = _pair(p_pain, 0.5)
    if p_pain == 0.5:
        return f"The model is undecided: p(pain) {p_text} favours neither pain nor no pain."
    towards = "pain" if p_pain > 0.5 else "no pain"
    if half != "0.50":
        # Printed with more digits than usual: the lean is real but slight.
        return f"The model leaned slightly towards {towards} (p(pain) {p_text})."
    return f"The model leaned towards {towards} (p(pain) {p_text})."


def routing_reason(
    *,
    p_pain: float,
    confidence: float,
    threshold: float | None,
    routed_to: str,
    is_bootstrap: bool,
    is_audit: bool = False,
) -> RoutingReason:
    """The reason a prediction was routed as it was, in words that agree with its numbers.

    ``threshold`` is the one stored on the prediction (in force when it was routed); ``None`` when
    none was recorded. The nurse band is ``(1 - threshold, threshold)`` in p(pain) (confidence is
    max(p, 1 - p)), the whole meter for the bootstrap model, and unknown without a threshold.
    """
    lean = _lean(p_pain)
    lean_text = _lean_words(p_pain)
    if is_bootstrap:
        return RoutingReason(
            decided_by="nurse",
            lean=lean,
            headline="This model never decides alone",
            text=(
                f"{lean_text} It is the bootstrap model, not trained on neonates: it never decides alone, "
                "so every frame it scores comes to a nurse whatever its confidence"
                + ("" if threshold is None else f" (the threshold {threshold:.2f} does not apply to it)")
                + "."
            ),
            band_low=0.0,
            band_high=1.0,
            band_label="Every frame goes to a nurse (bootstrap model)",
        )
    if threshold is None:
        return RoutingReason(
            decided_by="model" if routed_to == ROUTE_AUTO else "nurse",
            lean=lean,
            headline="Decided by the model" if routed_to == ROUTE_AUTO else "Sent to a nurse",
            text=f"{lean_text} No threshold was recorded for this frame, so the reason cannot be shown.",
            band_low=0.0,
            band_high=1.0,
            band_label="Threshold not recorded",
        )
    low = round(1.0 - threshold, 6)
    conf_text, threshold_text = _pair(confidence, threshold)
    band_label = f"Nurse band: p(pain) between {1 - threshold:.2f} and {threshold:.2f}"
    if routed_to == ROUTE_AUTO:
        verdict = "pain" if p_pain >= 0.5 else "no pain"
        text = (
            f"{lean_text} Its confidence {conf_text} is at or above the threshold {threshold_text}, "
            f"so it decided “{verdict}” by itself."
        )
        if is_audit:
            text += " This frame was also drawn at random for a blind nurse check (audit)."
        return RoutingReason("model", lean, f"Decided by the model: {verdict}", text, low, threshold, band_label)
    if confidence < threshold:
        text = (
            f"{lean_text} Its confidence {conf_text} is below the threshold {threshold_text}: "
            "too uncertain to decide alone, so it asks you."
        )
        return RoutingReason("nurse", lean, "Too uncertain to decide alone", text, low, threshold, band_label)
    text = (
        f"{lean_text} Its confidence {conf_text} reached the threshold {threshold_text}, "
        "yet the frame was sent to a nurse (routed by another rule)."
    )
    return RoutingReason("nurse", lean, "Sent to a nurse", text, low, threshold, band_label)
