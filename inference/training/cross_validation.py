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
from inference.training.finetune import FeatureBank, bank_centred
from inference.training.fit import predict_p_pain, train_painnet


def subject_figures(subject: str, p_pain: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Counts, accuracy, balanced accuracy, sensitivity, specificity and AUC of one subject's images."""
    m = th.binary_metrics(p_pain=p_pain, labels=labels)
    return {
        "subject": subject,
        **{k: m[k] for k in ("n", "n_pain", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")},
    }


def per_subject_accuracy(p_pain: np.ndarray, labels: np.ndarray, subjects: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`subject_figures` for each subject, sorted by subject."""
    subjects_arr = np.asarray(subjects)
    return [
        subject_figures(subject, p_pain[subjects_arr == subject], labels[subjects_arr == subject])
        for subject in sorted(set(subjects))
    ]


def subject_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means and sds over subjects of :func:`subject_figures` rows: each neonate counts once.

    ``auc_mean`` averages the subjects where both classes occur (``auc_subjects`` of them; None
    when there is none): a subject's AUC says whether the model ranks *that baby's* pain frames
    above its calm ones, which the pooled AUC, mixing babies, does not.
    """

    def spread(key: str) -> tuple[float | None, float | None, int]:
        values = np.array([r[key] for r in rows if r[key] is not None], dtype=np.float64)
        if values.size == 0:
            return None, None, 0
        return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0, int(values.size)

    accuracy_mean, accuracy_sd, _ = spread("accuracy")
    balanced_mean, balanced_sd, _ = spread("balanced_accuracy")
    auc_mean, auc_sd, auc_subjects = spread("auc")
    return {
        "accuracy_mean": accuracy_mean,
        "accuracy_sd": accuracy_sd,
        "balanced_accuracy_mean": balanced_mean,
        "balanced_accuracy_sd": balanced_sd,
        "auc_mean": auc_mean,
        "auc_sd": auc_sd,
        "auc_subjects": auc_subjects,
        "per_subject_accuracy": {r["subject"]: r["accuracy"] for r in rows},
    }


def choices_made(config: TrainConfig) -> dict[str, str]:
    """How each choice a fold's model depends on was made: none looks at the held-out subject."""
    stop = "validation AUC (ties: lower loss)" if config.stop_on == "auc" else "validation loss"
    return {
        "recipe": f"{config.recipe}: fixed in advance (inference.training.RECIPES), not tuned on this dataset",
        "hyper_parameters": "the recipe's, or the operator's command-line overrides; none searched",
        "epoch": f"early stopping on {stop} of validation subjects drawn (seeded) from the fold's training "
        "subjects; the held-out subject is never among them",
        "temperature": "not used by the fold's predictions; ece_temperature_scaled is cross-fitted over subjects",
        "threshold": "the table and guarantee are computed on the pooled out-of-fold predictions, after all folds",
        "baseline": (
            f"per-neonate: each subject's embeddings centred on the median of its own frames (at most "
            f"{config.baseline_window}, labels never read), the held-out subject's included, as serving does once "
            f"{config.baseline_min_frames} frames are in; fewer: centred on the training subjects' median"
            if config.baseline == "neonate"
            else "none: each frame judged on its own"
        ),
    }


def pooled_analysis(oof: np.ndarray, labels: np.ndarray, subjects: Sequence[str], *, alpha: float) -> dict[str, Any]:
    """The threshold analysis of pooled out-of-fold predictions, with cross-fitted temperature scaling."""
    analysis = th.threshold_analysis(p_pain=oof, labels=labels, alpha=alpha, subjects=list(subjects))
    # Out-of-sample calibration: each subject's temperature is fitted on the other subjects' predictions.
    subjects_arr = np.asarray(subjects)
    scaled = np.empty_like(oof)
    for subject in sorted(set(subjects)):
        mask = subjects_arr == subject
        t = th.temperature_fit(p_pain=oof[~mask], labels=labels[~mask])
        scaled[mask] = th.temperature_apply(oof[mask], t)
    analysis["ece_temperature_scaled"] = th.expected_calibration_error(p_pain=scaled, labels=labels)
    analysis["temperature_fitted_on"] = (
        "ece_temperature_scaled: cross-fitted (each subject scaled by a temperature fitted on the others); "
        "temperature: fitted on all out-of-fold predictions"
    )
    return analysis


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
        train_subjects, val_subjects = validation_split(
            others, config.val_subjects, config.seed * 7919 + fold, config.min_val_subjects
        )
        test_idx = subject_indices(subjects, [held_out])
        fold_bank = bank
        if config.baseline == "neonate":
            # Each subject centred on its own unlabelled frames; the cold-start reference from the
            # fold's training subjects only.
            fold_bank, _, _ = bank_centred(bank, subjects, reference_subjects=others)
        result = train_painnet(
            crops=crops,
            train_indices=subject_indices(subjects, train_subjects),
            val_indices=subject_indices(subjects, val_subjects),
            config=config,
            bank=fold_bank,
            progress=False,
            fold_seed=fold + 1,
        )
        p_test = predict_p_pain(
            result.model, [crops.crops[i] for i in test_idx], config=config, bank=fold_bank, indices=test_idx
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
    analysis = pooled_analysis(oof, labels, subjects, alpha=alpha)
    return {
        **subject_summary(folds),
        "accuracy_pooled": analysis.pop("accuracy"),
        "balanced_accuracy_pooled": analysis.pop("balanced_accuracy"),
        **analysis,
        "folds": folds,
        "backbone": config.backbone,
        "finetune": config.finetune,
        "evaluation": "leave-one-subject-out cross-validation (pooled out-of-fold predictions)",
        "choices": choices_made(config),
        "config": config.describe(),
        "seconds": round(time.perf_counter() - start_time, 2),
        "oof": {"p_pain": oof.tolist(), "labels": labels.tolist(), "subjects": list(subjects)},
    }
