"""LOSOCV of a linear probe (L2 logistic regression) on fixed features: the facial actions of the
face mesh (:mod:`inference.face_actions`), the frozen CNN embeddings, or both side by side.

No peeking: the L2 strength is chosen per outer fold by an inner leave-one-subject-out over that
fold's training subjects only (mean per-subject AUC; ties go to the stronger penalty); features
are standardised on the training rows of each fit. With ``baseline="neonate"`` every subject's
features are centred on the median of its own frames first (no labels; :mod:`inference.baseline`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from inference import thresholds as th
from inference.baseline import BaselinePolicy, centres_for, population_reference, subject_baselines
from inference.training.cross_validation import pooled_analysis, subject_figures, subject_summary
from inference.training.datasets import DatasetError

#: Feature sets of the linear probe: ``actions`` (face-mesh geometry), ``embedding`` (frozen CNN,
#: flip-averaged), ``combined`` (both, concatenated).
LINEAR_FEATURES = ("actions", "embedding", "combined")
#: L2 strengths tried by the inner LOSO (penalty ``l2 / 2 * |w|^2`` on the mean class-weighted loss).
L2_GRID = (0.003, 0.03, 0.3, 3.0, 30.0)


def logistic_fit(x: np.ndarray, y: np.ndarray, *, l2: float, iterations: int = 60) -> tuple[np.ndarray, float]:
    """Class-weighted L2 logistic regression by L-BFGS (deterministic): ``(weights, bias)``."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    n_pos = float(yt.sum())
    n_neg = float(len(yt) - n_pos)
    sample_w = torch.where(yt > 0, len(yt) / (2 * max(n_pos, 1)), len(yt) / (2 * max(n_neg, 1)))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = xt @ w + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none") * sample_w).mean()
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().numpy(), float(b.detach()[0])


def _fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, l2: float) -> np.ndarray:
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0) + 1e-6
    w, b = logistic_fit((x_train - mean) / std, y_train, l2=l2)
    return 1.0 / (1.0 + np.exp(-(((x_test - mean) / std) @ w + b)))


def _inner_auc(x: np.ndarray, y: np.ndarray, subjects: np.ndarray, l2: float) -> float:
    """Mean per-subject AUC of an inner leave-one-subject-out over ``subjects`` at ``l2``."""
    aucs = []
    for held in sorted(set(subjects.tolist())):
        test = subjects == held
        if len(set(y[~test].tolist())) < 2:
            continue
        auc = th.roc_auc(p_pain=_fit_predict(x[~test], y[~test], x[test], l2), labels=y[test])
        if auc is not None:
            aucs.append(auc)
    return float(np.mean(aucs)) if aucs else 0.0


def l2_choose(
    x: np.ndarray, y: np.ndarray, subjects: np.ndarray, grid: Sequence[float] = L2_GRID
) -> tuple[float, dict]:
    """The L2 strength with the best inner-LOSO per-subject AUC (ties: the stronger penalty)."""
    scores = {l2: _inner_auc(x, y, subjects, l2) for l2 in grid}
    best = max(sorted(grid, reverse=True), key=lambda l2: scores[l2])
    return best, scores


def centred_by_subject(
    features: np.ndarray, subjects: Sequence[str], *, policy: BaselinePolicy, reference_subjects: Sequence[str]
) -> np.ndarray:
    """``features`` minus each subject's baseline (median of its own rows), the reference for a cold start."""
    baselines = subject_baselines(features, subjects, policy)
    wanted = set(reference_subjects)
    rows = np.asarray([s in wanted for s in subjects])
    reference = population_reference([baselines[s] for s in sorted(wanted)], features[rows])
    return features - centres_for(subjects, baselines, reference)


def linear_losocv(
    features: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[str],
    *,
    name: str,
    baseline: str = "neonate",
    policy: BaselinePolicy | None = None,
    alpha: float = 0.05,
    grid: Sequence[float] = L2_GRID,
    progress: bool = True,
) -> dict[str, Any]:
    """LOSOCV of the linear probe on ``features``: the report fields of :func:`~inference.training.losocv`."""
    start = time.perf_counter()
    policy = policy or BaselinePolicy()
    subjects_arr = np.asarray(subjects)
    unique = sorted(set(subjects))
    if len(unique) < 3:
        raise DatasetError(f"LOSOCV needs at least 3 subjects; got {len(unique)}")
    labels = np.asarray(labels)
    oof = np.full(len(subjects), np.nan)
    folds = []
    for held_out in tqdm(unique, desc=f"LOSOCV {name}", unit="fold", disable=not progress, file=sys.stderr):
        test = subjects_arr == held_out
        others = [s for s in unique if s != held_out]
        x = (
            centred_by_subject(features, subjects, policy=policy, reference_subjects=others)
            if baseline == "neonate"
            else features
        )
        l2, scores = l2_choose(x[~test], labels[~test], subjects_arr[~test], grid)
        p_test = _fit_predict(x[~test], labels[~test], x[test], l2)
        oof[test] = p_test
        folds.append(
            {
                **subject_figures(held_out, p_test, labels[test]),
                "l2": l2,
                "inner_auc": {str(k): v for k, v in scores.items()},
            }
        )
    analysis = pooled_analysis(oof, labels, list(subjects), alpha=alpha)
    return {
        **subject_summary(folds),
        "accuracy_pooled": analysis.pop("accuracy"),
        "balanced_accuracy_pooled": analysis.pop("balanced_accuracy"),
        **analysis,
        "folds": folds,
        "features": name,
        "evaluation": "leave-one-subject-out cross-validation of a linear probe (pooled out-of-fold predictions)",
        "choices": {
            "l2": f"per outer fold, the best of {list(grid)} by mean per-subject AUC of an inner leave-one-subject-out "
            "over that fold's training subjects (ties: stronger penalty); the held-out subject never seen",
            "scaling": "standardised on the training rows of each fit",
            "baseline": "each subject centred on the median of its own frames (labels never read), the held-out "
            f"subject's included; fewer than {policy.min_frames} frames: the training subjects' median"
            if baseline == "neonate"
            else "none",
            "threshold": "0.5 (class-weighted loss); the table and guarantee on the pooled out-of-fold predictions",
        },
        "config": {"model": "L2 logistic regression", "features": name, "baseline": baseline, "l2_grid": list(grid)},
        "seconds": round(time.perf_counter() - start, 2),
        "oof": {"p_pain": oof.tolist(), "labels": labels.tolist(), "subjects": list(subjects)},
    }


def motion_relative_features(embeddings: np.ndarray, subjects: Sequence[str], policy: BaselinePolicy) -> np.ndarray:
    """The facial-movement features of each frame against its own subject's resting face (the
    median of the subject's embeddings, labels never read); a subject with fewer than
    ``policy.min_frames`` frames is compared with the median of the *other* subjects' baselines."""
    from inference.face_motion import motion_features

    baselines = subject_baselines(embeddings, subjects, policy)
    subjects_arr = np.asarray(subjects)
    centres = np.zeros_like(np.asarray(embeddings, dtype=np.float32))
    for subject, baseline in baselines.items():
        rows = subjects_arr == subject
        if baseline is None:
            others = [b for s, b in baselines.items() if s != subject]
            baseline = population_reference(others, embeddings[~rows] if (~rows).any() else embeddings[rows])
        centres[rows] = baseline
    return motion_features(embeddings, centres)


def motion_losocv(
    embeddings: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[str],
    *,
    policy: BaselinePolicy | None = None,
    alpha: float = 0.05,
    grid: Sequence[float] = L2_GRID,
    progress: bool = True,
) -> dict[str, Any]:
    """LOSOCV of the facial-movement model (:mod:`inference.face_motion`): the linear probe on the flow
    from each subject's resting face, the L2 chosen inside each fold's training subjects."""
    policy = policy or BaselinePolicy()
    features = motion_relative_features(embeddings, subjects, policy)
    result = linear_losocv(
        features,
        labels,
        subjects,
        name="motion",
        baseline="none",
        policy=policy,
        alpha=alpha,
        grid=grid,
        progress=progress,
    )
    result["choices"]["baseline"] = (
        "each subject's resting face is the median of its own aligned faces (labels never read), the held-out "
        f"subject's included, as served; fewer than {policy.min_frames} frames: the other subjects' median"
    )
    result["config"]["baseline"] = "neonate"
    return result
