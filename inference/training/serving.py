"""Train one PainNet for serving: fit, calibrate (temperature), validation figures, write the bundle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from inference import thresholds as th
from inference.bundle import save_bundle
from inference.painnet import CLASSES, PainNet
from inference.training.config import TrainConfig, subject_indices, validation_split
from inference.training.crops import CropSet
from inference.training.cross_validation import per_subject_accuracy, subject_summary
from inference.training.finetune import FeatureBank, bank_centred
from inference.training.fit import TrainResult, predict_p_pain, train_painnet

#: Limits on the served temperature. A small validation split is often perfectly separated,
#: where the NLL keeps falling as T -> 0 and would let the model claim certainty it has not
#: earned; sharpening is therefore capped at 2x. Softening is capped at 20x (an over-confident
#: model's optimum was 20 in one run; 5 hid it). A clipped value is reported, never silent.
SERVED_TEMPERATURE_BOUNDS = (0.5, 20.0)
#: Fewer validation images than this (or one class only): serve uncalibrated (T = 1).
MIN_CALIBRATION_IMAGES = 20


@dataclass
class TrainedModel:
    """A model ready to be saved as a bundle, with its held-out validation metrics."""

    model: PainNet
    temperature: float
    metrics: dict[str, Any]
    metadata: dict[str, Any]
    result: TrainResult


def served_temperature(p_pain: np.ndarray, labels: np.ndarray, calibrate: bool = True) -> tuple[float, float | None]:
    """(temperature to serve, NLL-optimal temperature or None when not fitted).

    Fitted on the validation subjects and clipped to :data:`SERVED_TEMPERATURE_BOUNDS`;
    1.0 (uncalibrated) when calibration is off or the validation set is too small.
    """
    if not calibrate or labels.size < MIN_CALIBRATION_IMAGES or len(set(labels.tolist())) < 2:
        return 1.0, None
    fitted = th.temperature_fit(p_pain=p_pain, labels=labels)
    low, high = SERVED_TEMPERATURE_BOUNDS
    return float(min(high, max(low, fitted))), fitted


#: Audit labels (blind nurse scores of a random share of automatic verdicts) needed before the
#: guarantee is set on them instead of on validation subjects. A floor on frames only: the
#: guarantee itself still needs its minimum number of babies and says so when there are fewer.
MIN_AUDIT_LABELS = 30

#: Why a guarantee set on validation subjects of nurse labels is biased (stored and printed).
VALIDATION_CALIBRATION_BIAS = (
    "the nurse labels are mostly uncertain cases (frames the model routed to a nurse because it was "
    "unsure), not a random sample of the frames it decides by itself, so a guarantee set on them "
    "need not hold on live frames"
)


def audit_calibration_source(subjects: Sequence[str]) -> dict[str, Any]:
    """``calibration_source`` when the guarantee is set on audit labels (one subject per audit frame)."""
    return {
        "source": "audit",
        "n_images": len(subjects),
        "n_subjects": len(set(subjects)),
        "note": f"{len(subjects)} audit labels (a random share of automatic verdicts, scored blind), "
        "kept out of training",
    }


def validation_roles(val_subjects: Sequence[str], *, seed: int, groups: int = 3) -> dict[str, Any]:
    """Which validation subjects early-stop, fit the temperature and set the guarantee.

    Disjoint groups by subject, seeded, when there are at least ``groups`` subjects (with
    ``groups=2`` the guarantee is set elsewhere, on audit labels). With fewer, a use is shared
    and ``reuse`` says which: two subjects -> early stopping sees both, the temperature one and
    the guarantee the other; one subject -> all three on it.
    """
    unique = sorted(set(val_subjects))
    shuffled = random.Random(f"validation-roles:{seed}").sample(unique, len(unique))
    k = len(shuffled)
    if groups == 3 and k >= 3:
        return {
            "early_stopping": sorted(shuffled[: k // 3]),
            "temperature": sorted(shuffled[k // 3 : 2 * k // 3]),
            "calibration": sorted(shuffled[2 * k // 3 :]),
            "reuse": None,
        }
    if groups == 2 and k >= 2:
        return {
            "early_stopping": sorted(shuffled[: k // 2]),
            "temperature": sorted(shuffled[k // 2 :]),
            "calibration": [],
            "reuse": None,
        }
    if k >= 2:  # groups == 3, two subjects
        return {
            "early_stopping": unique,
            "temperature": sorted(shuffled[:1]),
            "calibration": [] if groups == 2 else sorted(shuffled[1:]),
            "reuse": "only 2 validation subjects: early stopping saw both the temperature's and the guarantee's",
        }
    return {
        "early_stopping": unique,
        "temperature": unique,
        "calibration": [] if groups == 2 else unique,
        "reuse": f"only {k} validation subject: early stopping, temperature and guarantee all used it",
    }


def train_model(
    crops: CropSet,
    *,
    config: TrainConfig,
    alpha: float = 0.05,
    progress: bool = True,
    dataset: dict[str, Any] | None = None,
    audit: Sequence[bool] | None = None,
) -> TrainedModel:
    """Train on all subjects but the validation subjects; metrics from the validation subjects.

    The validation subjects are split by subject into three disjoint groups (see
    :func:`validation_roles`): one early-stops training, one fits the temperature, one sets the
    guarantee; ``metrics["validation_roles"]`` says which served which (and any reuse when there
    are fewer than three). ``audit[i]`` marks image ``i`` as an audit label (a random automatic
    verdict scored blind): with at least :data:`MIN_AUDIT_LABELS` of them they are kept out of
    training and set the guarantee instead of validation subjects; otherwise the guarantee falls
    back to validation subjects and ``metrics["calibration_source"]`` says why that is biased.
    The threshold table is on all validation subjects (early stopping looked at some of them;
    LOSOCV via ``evaluate_model`` is the unbiased estimate).
    """
    subjects = crops.subjects
    audit_flags = list(audit) if audit is not None else [False] * len(subjects)
    if len(audit_flags) != len(subjects):
        raise ValueError(f"audit has {len(audit_flags)} flags for {len(subjects)} images")
    audit_idx = [i for i, flag in enumerate(audit_flags) if flag]
    use_audit = len(audit_idx) >= MIN_AUDIT_LABELS
    held_for_audit = set(audit_idx) if use_audit else set()
    train_subjects, val_subjects = validation_split(subjects, config.val_subjects, config.seed, config.min_val_subjects)
    train_idx = [i for i in subject_indices(subjects, train_subjects) if i not in held_for_audit]
    val_idx = [i for i in subject_indices(subjects, val_subjects) if i not in held_for_audit]
    if not val_idx:
        # One subject only: hold out a seeded 20% of its images instead (documented weaker check).
        rng = random.Random(f"val-images:{config.seed}")
        pool = [i for i in range(len(subjects)) if i not in held_for_audit]
        val_idx = sorted(rng.sample(pool, max(1, len(pool) // 5))) if len(pool) >= 5 else []
        train_idx = [i for i in pool if i not in set(val_idx)]
    roles = validation_roles([subjects[i] for i in val_idx], seed=config.seed, groups=2 if use_audit else 3)
    early_idx = [i for i in val_idx if subjects[i] in set(roles["early_stopping"])]
    bank, baseline_meta = None, None
    if config.baseline == "neonate":
        # Every frame judged against its subject's own baseline, the guarantee's frames included:
        # the same function the worker serves with once a neonate has enough frames (a cold start
        # goes to a nurse, so the guarantee need not cover it).
        bank, _, reference = bank_centred(
            FeatureBank(crops.crops, config=config, progress=progress), subjects, reference_subjects=train_subjects
        )
        baseline_meta = {"kind": "neonate", **config.baseline_policy().describe(), "reference": reference.tolist()}
    result = train_painnet(
        crops=crops, train_indices=train_idx, val_indices=early_idx, config=config, progress=progress, bank=bank
    )
    # p(pain) of every validation image (and audit label) from the early-stopped weights.
    scored_idx = val_idx + (audit_idx if use_audit else [])
    scored_p = predict_p_pain(
        result.model,
        [crops.crops[i] for i in scored_idx],
        config=config,
        bank=bank,
        indices=scored_idx if bank is not None else None,
    )
    result = dataclasses.replace(
        result,
        val_p_pain=scored_p[: len(val_idx)],
        val_labels=crops.labels[val_idx],
        val_subjects=sorted({subjects[i] for i in val_idx}),
    )
    val_subject_of = [subjects[i] for i in val_idx]
    temperature_mask = np.array([s in set(roles["temperature"]) for s in val_subject_of], dtype=bool)
    temperature, fitted = served_temperature(
        result.val_p_pain[temperature_mask], result.val_labels[temperature_mask], config.calibrate
    )
    if use_audit:
        calibration_p = scored_p[len(val_idx) :]
        calibration_labels = crops.labels[audit_idx]
        calibration_subjects = [subjects[i] for i in audit_idx]
        source = audit_calibration_source(calibration_subjects)
        roles = {**roles, "calibration": f"audit labels ({len(audit_idx)} frames)"}
    else:
        calibration_mask = np.array([s in set(roles["calibration"]) for s in val_subject_of], dtype=bool)
        calibration_p = result.val_p_pain[calibration_mask]
        calibration_labels = result.val_labels[calibration_mask]
        calibration_subjects = [s for s, keep in zip(val_subject_of, calibration_mask) if keep]
        source = {
            "source": "validation subjects",
            "n_images": int(calibration_mask.sum()),
            "n_subjects": len(set(calibration_subjects)),
            "note": f"fell back to validation subjects: {len(audit_idx)} audit labels, "
            f"{MIN_AUDIT_LABELS} needed; biased because {VALIDATION_CALIBRATION_BIAS}",
        }
    served = th.temperature_apply(result.val_p_pain, temperature) if result.val_labels.size else result.val_p_pain
    metrics: dict[str, Any] = {"validation_roles": roles, "calibration_source": source}
    if result.val_labels.size:
        analysis = th.threshold_analysis(p_pain=served, labels=result.val_labels, alpha=alpha, subjects=val_subject_of)
        if calibration_labels.size:
            # The guarantee (and the scores kept to recompute it) only from frames the temperature
            # and early stopping did not see (unless ``roles["reuse"]`` says otherwise).
            calibration = th.threshold_analysis(
                p_pain=th.temperature_apply(calibration_p, temperature),
                labels=calibration_labels,
                alpha=alpha,
                subjects=calibration_subjects,
            )
            for key in ("guarantee", "guarantee_conditional", "calibration_scores"):
                analysis[key] = calibration[key]
        analysis["ece"] = th.expected_calibration_error(p_pain=result.val_p_pain, labels=result.val_labels)
        analysis["ece_temperature_scaled"] = th.expected_calibration_error(p_pain=served, labels=result.val_labels)
        analysis["temperature"] = temperature
        analysis["temperature_fitted"] = fitted
        analysis["temperature_clipped"] = fitted is not None and abs(fitted - temperature) > 1e-9
        analysis["temperature_fitted_on"] = (
            f"validation subjects {', '.join(roles['temperature'])} (NLL); early stopping on "
            f"{', '.join(roles['early_stopping'])}; guarantee on {source['note']}"
            f"{'; ' + roles['reuse'] if roles['reuse'] else ''}; "
            f"served value clipped to {list(SERVED_TEMPERATURE_BOUNDS)} (reported when clipped), "
            f"1.0 when fewer than {MIN_CALIBRATION_IMAGES} images or one class"
        )
        metrics.update(analysis)
        per_subject = per_subject_accuracy(served, result.val_labels, val_subject_of)
        metrics["folds"] = per_subject
        metrics.update(subject_summary(per_subject))
    metrics.update(
        {
            "evaluation": "held-out validation subjects (some also used for early stopping, see validation_roles)",
            "backbone": config.backbone,
            "finetune": config.finetune,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "train_seconds": round(result.seconds, 2),
            "validation_subjects": val_subjects,
            "dataset": dataset or {},
            "history": result.history,
        }
    )
    metadata = {
        "architecture": "painnet",
        "backbone": config.backbone,
        "classes": list(CLASSES),
        "preprocessing": result.model.preprocessing_spec,
        "temperature": temperature,
        # Serving averages each crop's logits with its mirror image's, as the evaluation did.
        **({"test_time_augmentation": "flip"} if config.flip_tta else {}),
        # The head judges embedding - baseline (inference.baseline); the worker keeps the baselines.
        **({"baseline": baseline_meta} if baseline_meta else {}),
        "training_data": {
            **(dataset or {}),
            "train_subjects": train_subjects,
            "validation_subjects": val_subjects,
            "validation_roles": roles,
            "calibration_source": source,
            "train_sha256": sorted({crops.file_sha256[i] for i in train_idx}),
            "crop_settings": crops.settings.describe(),
            "skipped": len(crops.skipped),
        },
        "training": {
            **config.describe(),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "torch": torch.__version__,
        },
    }
    return TrainedModel(model=result.model, temperature=temperature, metrics=metrics, metadata=metadata, result=result)


def bundle_write(
    trained: TrainedModel,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str | None = None,
    description: str = "",
) -> str:
    """Save ``trained`` as an :mod:`inference.bundle` file; returns its sha256."""
    now = dt.datetime.now(dt.UTC)
    metadata = {
        **trained.metadata,
        "name": name or f"painnet-{trained.metadata['backbone']}",
        "version": version or now.strftime("%Y%m%d-%H%M%S"),
        "metrics": trained.metrics,
        "description": description
        or (
            f"PainNet ({trained.metadata['backbone']}, fine-tune {trained.metadata['training']['finetune']}) "
            f"trained on {trained.metadata['training_data'].get('n_images', '?')} images of "
            f"{trained.metadata['training_data'].get('n_subjects', '?')} subjects."
        ),
    }
    return save_bundle(path, model=trained.model, metadata=metadata)
