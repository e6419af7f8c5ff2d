"""The one function that words a routing: its sentences agree with the numbers on every edge."""

from __future__ import annotations

import pytest

from triage.routing_reason import routing_reason


def reason(p, threshold=0.55, routed_to=None, bootstrap=False, audit=False):
    confidence = max(p, 1 - p)
    if routed_to is None:
        routed_to = "auto" if threshold is not None and confidence >= threshold and not bootstrap else "nurse"
    return routing_reason(
        p_pain=p,
        confidence=confidence,
        threshold=threshold,
        routed_to=routed_to,
        is_bootstrap=bootstrap,
        is_audit=audit,
    )


def test_it_says_below_only_when_the_confidence_is_below_the_threshold():
    r = reason(0.52)
    assert r.decided_by == "nurse" and r.lean == "pain"
    assert "confidence 0.52 is below the threshold 0.55" in r.text
    assert "leaned towards pain" in r.text


def test_a_confidence_above_the_threshold_is_never_called_below():
    """The issue's example: 0.58 against 0.55 was worded "below the threshold"."""
    r = reason(0.58)
    assert r.decided_by == "model"
    assert "below" not in r.text
    assert "confidence 0.58 is at or above the threshold 0.55" in r.text and "“pain”" in r.text


def test_a_confidence_equal_to_the_threshold_decides_and_says_so():
    r = reason(0.45)  # confidence 0.55 == threshold: automatic no pain
    assert r.decided_by == "model" and r.lean == "no pain"
    assert "confidence 0.55 is at or above the threshold 0.55" in r.text and "“no pain”" in r.text


def test_numbers_that_round_alike_are_printed_with_enough_digits():
    r = reason(0.549)  # 0.549 prints as 0.55 at two decimals
    assert "confidence 0.549 is below the threshold 0.550" in r.text


def test_half_is_undecided_not_a_lean_towards_no_pain():
    r = reason(0.5)
    assert r.lean == "undecided"
    assert "undecided" in r.text and "leaned" not in r.text and "towards no pain" not in r.text


def test_a_hair_above_half_is_a_slight_lean_printed_so_it_differs_from_half():
    r = reason(0.501)
    assert r.lean == "pain" and "leaned slightly towards pain (p(pain) 0.501)" in r.text


def test_the_bootstrap_model_never_decides_alone():
    r = reason(0.9, bootstrap=True)  # confident, yet a nurse decides
    assert r.decided_by == "nurse" and r.headline == "This model never decides alone"
    assert "never decides alone" in r.text and "below" not in r.text
    assert (r.band_low, r.band_high) == (0.0, 1.0)  # the whole meter is the nurse band


def test_a_missing_threshold_is_said_plainly():
    r = reason(0.7, threshold=None, routed_to="nurse")
    assert "No threshold was recorded" in r.text and "below" not in r.text
    assert r.band_label == "Threshold not recorded"


@pytest.mark.parametrize("threshold", [0.55, 0.7, 0.9])
def test_the_meter_band_matches_the_routing(threshold):
    """Every p inside the band goes to a nurse and every p outside is decided, as the router does."""
    from triage.services.predictions import prediction_route

    for i in range(101):
        p = i / 100
        r = reason(p, threshold=threshold)
        inside = r.band_low < p < r.band_high
        routed = prediction_route(confidence=max(p, 1 - p), threshold=threshold, is_bootstrap=False)
        assert inside == (routed == "nurse") == (r.decided_by == "nurse"), p


def test_an_audit_case_says_it_was_decided_and_drawn_for_a_check():
    r = reason(0.2, audit=True)
    assert r.decided_by == "model" and "audit" in r.text
