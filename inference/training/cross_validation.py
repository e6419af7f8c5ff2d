"""Leave-one-subject-out cross-validation (the paper's LOSOCV) and per-subject figures."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from inference import thresholds as th
from inference.training.config import TrainConfig, subject_indices, validation_split
from inference.training.crops import CropSet
from inference.training.datasets import DatasetError
from inference.training.finetune import FeatureBank
from inference.training.fit import predict_p_pain, train_painnet


def subject_figures(subject: str, p_pain: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Counts, accuracy, sensitivity and specificity of one subject's images."""
    m = th.binary_metrics(p_pain=p_pain, labels=labels)
    return {
        "subject": subject,
        "n": m["n"],
        "n_pain": m["n_pain"],
        "accuracy": m["accuracy"],
        "sensitivity": m["sensitivity"],
        "specificity": m["specificity"],
    }


def per_subject_accuracy(p_pain: np.ndarray, labels: np.ndarray, subjects: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`subject_figures` for each subject, sorted by subject."""
    subjects_arr = np.asarray(subjects)
    return [
        subject_figures(subject, p_pain[subjects_arr == subject], labels[subjects_arr == subject])
        for subject in sorted(set(subjects))
    ]


def losocv(
    crops: CropSet,
    *,
    config: TrainConfig,
    alpha: float = 0.05,
    progress: bool = True,
    bank: FeatureBank | None = None,
) -> dict[str, Any]:
    """The paper's LOSOCV: per held-out subject, train on the others (early-stopping on a
    validation split of them) and test on it. Summary figures pool the out-of-fold predictions.

    Returns the metrics dict (``accuracy_mean``, ``accuracy_sd``, ``folds``, ``auc``,
    ``sensitivity``, ``specificity``, ``thresholds``, ``aurc``, ``ece``,
    ``ece_temperature_scaled``, ``temperature``, ``risk_coverage``, ``guarantee`` ...) plus
    ``"oof"`` (per-image p_pain, label, subject) for plots.
    """
    start_time = time.perf_counter()
    subjects = crops.subjects
    unique = sorted(set(subjects))
    if len(unique) < 3:
        raise DatasetError(f"LOSOCV needs at least 3 subjects (train, validation, test); got {len(unique)}")
    if bank is None and config.finetune != "all":
        bank = FeatureBank(crops.crops, config=config, progress=progress)
    labels = crops.labels
    oof = np.full(len(subjects), np.nan)
    folds = []
    for fold, held_out in enumerate(
        tqdm(unique, desc=f"LOSOCV {config.backbone}", unit="fold", disable=not progress, file=sys.stderr)
    ):
        others = [s for s in subjects if s != held_out]
        train_subjects, val_subjects = validation_split(others, config.val_subjects, config.seed * 7919 + fold)
        test_idx = subject_indices(subjects, [held_out])
        result = train_painnet(
            crops=crops,
            train_indices=subject_indices(subjects, train_subjects),
            val_indices=subject_indices(subjects, val_subjects),
            config=config,
            bank=bank,
            progress=False,
            fold_seed=fold + 1,
        )
        p_test = predict_p_pain(
            result.model, [crops.crops[i] for i in test_idx], config=config, bank=bank, indices=test_idx
        )
        oof[test_idx] = p_test
        folds.append(
            {
                **subject_figures(held_out, p_test, labels[test_idx]),
                "validation_subjects": val_subjects,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
            }
        )
    accuracies = np.array([f["accuracy"] for f in folds], dtype=np.float64)
    analysis = th.threshold_analysis(p_pain=oof, labels=labels, alpha=alpha, subjects=list(subjects))
    # Out-of-sample calibration: each subject's temperature is fitted on the other subjects' predictions.
    subjects_arr = np.asarray(subjects)
    scaled = np.empty_like(oof)
    for subject in unique:
        mask = subjects_arr == subject
        t = th.temperature_fit(p_pain=oof[~mask], labels=labels[~mask])
        scaled[mask] = th.temperature_apply(oof[mask], t)
    analysis["ece_temperature_scaled"] = th.expected_calibration_error(p_pain=scaled, labels=labels)
    analysis["temperature_fitted_on"] = (
        "ece_temperature_scaled: cross-fitted (each subject scaled by a temperature fitted on the others); "
        "temperature: fitted on all out-of-fold predictions"
    )
    return {
        "accuracy_mean": float(accuracies.mean()),
        "accuracy_sd": float(accuracies.std(ddof=1)) if accuracies.size > 1 else 0.0,
        "accuracy_pooled": analysis.pop("accuracy"),
        **analysis,
        "folds": folds,
        "per_subject_accuracy": {f["subject"]: f["accuracy"] for f in folds},
        "backbone": config.backbone,
        "finetune": config.finetune,
        "evaluation": "leave-one-subject-out cross-validation (pooled out-of-fold predictions)",
        "config": config.describe(),
        "seconds": round(time.perf_counter() - start_time, 2),
        "oof": {"p_pain": oof.tolist(), "labels": labels.tolist(), "subjects": list(subjects)},
    }
