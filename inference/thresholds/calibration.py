"""Calibration: expected calibration error and temperature scaling (Guo et al. 2017)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from inference.thresholds.metrics import as_arrays, confidence_of, predicted_pain

_EPS = 1e-7


def confidence_bins(conf: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Index of each confidence's equal-width bin over [0.5, 1] (the last bin closed)."""
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    return np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)


def expected_calibration_error(*, p_pain: Sequence[float], labels: Sequence[int], n_bins: int = 10) -> float | None:
    """Top-label ECE with equal-width confidence bins over [0.5, 1] (Guo et al. 2017).

    The confidence that is thresholded is the one whose calibration matters, so bins are on
    ``max(p, 1-p)`` and accuracy is of the predicted class.
    """
    p, y = as_arrays(p_pain, labels)
    n = y.size
    if n == 0:
        return None
    conf = confidence_of(p)
    correct = (predicted_pain(p) == (y == 1)).astype(np.float64)
    bin_index = confidence_bins(conf, n_bins)
    ece = 0.0
    for b in range(n_bins):
        mask = bin_index == b
        if mask.any():
            ece += mask.sum() / n * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def logit_of(p_pain: Sequence[float]) -> np.ndarray:
    """log(p / (1 - p)): the two-class softmax logit difference the probability came from."""
    p = np.clip(np.asarray(p_pain, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def temperature_apply(p_pain: Sequence[float], temperature: float) -> np.ndarray:
    """softmax(z / T) for two classes, i.e. sigmoid(logit / T)."""
    z = logit_of(p_pain) / float(temperature)
    return 1.0 / (1.0 + np.exp(-z))


def _nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    s = z / temperature
    # log(1 + exp(-s)) for pain, log(1 + exp(s)) for nonpain, computed stably.
    return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -s, s))))


def temperature_fit(
    *, p_pain: Sequence[float], labels: Sequence[int], bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """Temperature T minimising the negative log-likelihood on calibration data (Guo et al. 2017).

    One parameter, so a golden-section search on log T is exact enough and needs no optimiser.
    T > 1 softens an over-confident model; ranking (AUC, AURC) is unchanged.
    """
    p, y = as_arrays(p_pain, labels)
    if y.size == 0:
        return 1.0
    z = logit_of(p)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = _nll(z, y, math.exp(c)), _nll(z, y, math.exp(d))
    for _ in range(100):
        if b - a < 1e-6:
            break
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = _nll(z, y, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = _nll(z, y, math.exp(d))
    return float(math.exp((a + b) / 2.0))
