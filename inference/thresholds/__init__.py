"""Threshold analysis for the human-in-the-loop triage: pure numpy, no torch, no Django.

Every function takes ``p_pain`` (the model's softmax probability of pain, as served) and
``labels`` (1 = pain, 0 = nonpain, the nurse's NIPS decision) for a labelled held-out set.

The routing rule is the paper's (Zhao et al. 2024) and the platform's: the model's verdict is
the class with the higher probability, its *confidence* is that probability
(``max(p, 1 - p)``), and a frame whose confidence is **at or above** the unit's threshold is
decided automatically; below it, the frame goes to a nurse.

Assumption behind the paper's "framework accuracy" (:func:`threshold_table`): a case routed
to a nurse is counted as correct, i.e. the nurse's NIPS decision is the reference standard.
The figure therefore measures the model's share of the error, not the nurses'.

The threshold with a guarantee (:func:`guaranteed_threshold`) uses conformal risk control
(Angelopoulos et al. 2022, "Conformal Risk Control", Thm 1) or Learn-then-Test
(Angelopoulos et al. 2021) on nurse-labelled calibration data; see its docstring and
docs/learning.md for what is guaranteed and under which assumptions.

Where each part lives (this package re-exports the public names, so callers keep writing
``from inference import thresholds as th``):

* :mod:`~inference.thresholds.metrics`: confidence, verdict, accuracy/sensitivity/AUC, kappa.
* :mod:`~inference.thresholds.tables`: the accuracy/workload table, risk-coverage, AURC.
* :mod:`~inference.thresholds.calibration`: ECE and temperature scaling.
* :mod:`~inference.thresholds.risk_control`: conformal risk control and Learn-then-Test, per baby.
* :mod:`~inference.thresholds.guarantee`: the guarantee as a model's metrics store it.
* :mod:`~inference.thresholds.analysis`: all figures for a model's metrics, and their plot.
"""

from inference.thresholds.analysis import (
    guarantees_for_alpha,
    guarantees_from_metrics,
    plot_threshold_analysis,
    threshold_analysis,
)
from inference.thresholds.calibration import (
    confidence_bins,
    expected_calibration_error,
    logit_of,
    temperature_apply,
    temperature_fit,
)
from inference.thresholds.guarantee import guarantee_statement, guaranteed_threshold, missed_pain_loss
from inference.thresholds.metrics import (
    as_arrays,
    binary_metrics,
    cohen_kappa,
    confidence_of,
    predicted_pain,
    roc_auc,
    wilson_interval,
)
from inference.thresholds.tables import (
    DEFAULT_THRESHOLDS,
    RISK_COVERAGE_POINTS,
    aurc,
    risk_coverage_curve,
    threshold_table,
)

__all__ = [
    "RISK_COVERAGE_POINTS",
    "DEFAULT_THRESHOLDS",
    "as_arrays",
    "aurc",
    "binary_metrics",
    "cohen_kappa",
    "confidence_bins",
    "confidence_of",
    "expected_calibration_error",
    "guarantee_statement",
    "guaranteed_threshold",
    "guarantees_for_alpha",
    "guarantees_from_metrics",
    "logit_of",
    "missed_pain_loss",
    "plot_threshold_analysis",
    "predicted_pain",
    "risk_coverage_curve",
    "roc_auc",
    "temperature_apply",
    "temperature_fit",
    "threshold_analysis",
    "threshold_table",
    "wilson_interval",
]
