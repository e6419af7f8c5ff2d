"""Train a face model for serving that judges each frame against its neonate's baseline: the facial
actions (face-mesh geometry, architecture ``face_actions``) or the facial movement (optical flow
from the baby's resting face, ``face_motion``, :mod:`inference.face_motion`). Both: an L2 logistic
regression (L2 by leave-one-subject-out over the training subjects), a temperature and the
guarantee on disjoint validation subjects. The bundle is served like PainNet; the worker keeps the
baselines (:mod:`inference.baseline`)."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from inference import thresholds as th
from inference.baseline import BaselinePolicy, population_reference, relative_p_pain, subject_baselines
from inference.face_actions import ACTIONS, N_FEATURES, actions_spec, crops_action_features, face_actions_model
from inference.painnet import CLASSES
from inference.training.config import TrainConfig, subject_indices, validation_split
from inference.training.crops import CropSet
from inference.training.cross_validation import per_subject_accuracy, subject_summary
from inference.training.linear import L2_GRID, centred_by_subject, l2_choose, logistic_fit
from inference.training.serving import (
    MIN_AUDIT_LABELS,
    MIN_CALIBRATION_IMAGES,
    VALIDATION_CALIBRATION_BIAS,
    TrainedModel,
    audit_calibration_source,
    served_temperature,
)


def _split_roles(val_subjects: list[str], seed: int, *, audit: int = 0) -> dict[str, Any]:
    """Temperature and guarantee on disjoint halves of the validation subjects (one subject: both on
    it); with ``audit`` audit labels the guarantee is set on them and the temperature on every
    validation subject."""
    shuffled = random.Random(f"actions-roles:{seed}").sample(sorted(val_subjects), len(val_subjects))
    none = ["none (no epochs: the L2 is chosen by leave-one-subject-out over the training subjects)"]
    if audit:
        return {
            "early_stopping": none,
            "temperature": sorted(shuffled),
            "calibration": f"audit labels ({audit} frames)",
            "reuse": None,
        }
    if len(shuffled) < 2:
        return {
            "early_stopping": none,
            "temperature": shuffled,
            "calibration": shuffled,
            "reuse": "one validation subject: temperature and guarantee both on it",
        }
    half = len(shuffled) // 2
    return {
        "early_stopping": none,
        "temperature": sorted(shuffled[:half]),
        "calibration": sorted(shuffled[half:]),
        "reuse": None,
    }


#: ``--features`` of a face model -> (architecture, backbone name, what the model is, in words).
FACE_MODELS = {
    "actions": (
        "face_actions",
        "face_mesh",
        "L2 logistic regression on face-mesh action geometry, relative to each subject's baseline",
    ),
    "motion": (
        "face_motion",
        "face_mesh_flow",
        "L2 logistic regression on the optical flow from each subject's resting face (its baseline) to the frame",
    ),
}


def face_model_description(kind: str, dataset: dict[str, Any]) -> str:
    """The bundle's one-line description of a face model trained on ``dataset`` (its summary)."""
    what = {
        "actions": "Facial actions (face mesh) relative to each neonate's baseline",
        "motion": "Facial movement (optical flow) from each neonate's resting face",
    }[kind]
    return (
        f"{what}, L2 logistic regression, trained on {dataset.get('n_images', '?')} images of "
        f"{dataset.get('n_subjects', '?')} subjects."
    )


def train_actions_model(
    crops: CropSet,
    *,
    config: TrainConfig,
    alpha: float = 0.05,
    dataset: dict[str, Any] | None = None,
    features: np.ndarray | None = None,
    kind: str = "actions",
    audit: Sequence[bool] | None = None,
) -> TrainedModel:
    """A servable face model (``kind``: a key of :data:`FACE_MODELS`) trained on all subjects but the
    validation subjects. ``features``: the crops' embeddings when already computed.

    ``audit[i]`` marks image ``i`` as an audit label (a random automatic verdict scored blind), as
    for PainNet (:func:`inference.training.serving.train_model`): with at least
    :data:`MIN_AUDIT_LABELS` of them they are kept out of the fit and the temperature and set the
    guarantee, each frame against its own subject's baseline; otherwise the guarantee falls back to
    validation subjects and ``metrics["calibration_source"]`` says why that is biased. Baselines
    read no labels, so every frame (audit ones too) counts in its subject's, as in serving."""
    from inference.face_motion import crops_motion_embeddings, face_motion_model, motion_features

    start = time.perf_counter()
    architecture, backbone, described = FACE_MODELS[kind]
    policy: BaselinePolicy = config.baseline_policy()
    subjects = crops.subjects
    if features is not None:
        x_all = features
    else:
        x_all = crops_motion_embeddings(crops.crops) if kind == "motion" else crops_action_features(crops.crops)
    flags = list(audit) if audit is not None else [False] * len(subjects)
    if len(flags) != len(subjects):
        raise ValueError(f"audit has {len(flags)} flags for {len(subjects)} images")
    audit_idx = [i for i, flag in enumerate(flags) if flag]
    use_audit = len(audit_idx) >= MIN_AUDIT_LABELS
    held = set(audit_idx) if use_audit else set()
    train_subjects, val_subjects = validation_split(
        subjects, config.val_subjects, config.seed, max(2, config.min_val_subjects)
    )
    train_idx = [i for i in subject_indices(subjects, train_subjects) if i not in held]
    baselines = subject_baselines(x_all, subjects, policy)
    reference = population_reference([baselines[s] for s in train_subjects], x_all[train_idx])
    if kind == "motion":
        centres_all = np.stack([baselines[s] if baselines[s] is not None else reference for s in subjects])
        centred = motion_features(x_all, centres_all)
    else:
        centred = centred_by_subject(x_all, subjects, policy=policy, reference_subjects=train_subjects)
        centres_all = x_all - centred
    val_idx = [i for i in subject_indices(subjects, val_subjects) if i not in held]
    y = crops.labels
    subjects_arr = np.asarray(subjects)
    l2, inner = l2_choose(centred[train_idx], y[train_idx], subjects_arr[train_idx], L2_GRID)
    mean = centred[train_idx].mean(axis=0)
    std = centred[train_idx].std(axis=0) + 1e-6
    w, b = logistic_fit((centred[train_idx] - mean) / std, y[train_idx], l2=l2)
    model = face_motion_model() if kind == "motion" else face_actions_model(x_all.shape[1])
    layers = model.head.score if kind == "motion" else model.head
    with torch.no_grad():
        layers[0].mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        layers[0].std.copy_(torch.from_numpy(std.astype(np.float32)))
        linear = layers[1]
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[1] = torch.from_numpy(w.astype(np.float32))
        linear.bias[1] = float(b)
        model.reference.copy_(torch.from_numpy(reference))
    model.eval()
    # Validation (and audit) frames scored exactly as served: against their own subject's baseline.
    scored_idx = val_idx + (audit_idx if use_audit else [])
    scored_p = relative_p_pain(model.head, x_all[scored_idx], None, centres_all[scored_idx])
    val_p = scored_p[: len(val_idx)]
    val_labels = y[val_idx]
    val_subject_of = [subjects[i] for i in val_idx]
    roles = _split_roles(val_subjects, config.seed, audit=len(audit_idx) if use_audit else 0)
    t_mask = np.array([s in set(roles["temperature"]) for s in val_subject_of], dtype=bool)
    temperature, fitted = served_temperature(val_p[t_mask], val_labels[t_mask], config.calibrate)
    served = th.temperature_apply(val_p, temperature) if val_labels.size else val_p
    if use_audit:
        calibration_p, calibration_labels = scored_p[len(val_idx) :], y[audit_idx]
        calibration_subjects = [subjects[i] for i in audit_idx]
        source = audit_calibration_source(calibration_subjects)
    else:
        c_mask = np.array([s in set(roles["calibration"]) for s in val_subject_of], dtype=bool)
        calibration_p, calibration_labels = val_p[c_mask], val_labels[c_mask]
        calibration_subjects = [s for s, keep in zip(val_subject_of, c_mask) if keep]
        source = {
            "source": "validation subjects",
            "n_images": int(c_mask.sum()),
            "n_subjects": len(set(calibration_subjects)),
            "note": f"validation subjects {', '.join(roles['calibration'])} ({int(c_mask.sum())} frames)"
            + (
                f"; fell back to them: {len(audit_idx)} audit labels, {MIN_AUDIT_LABELS} needed; biased because "
                f"{VALIDATION_CALIBRATION_BIAS}"
                if audit is not None
                else ""
            ),
        }
    metrics: dict[str, Any] = {
        "validation_roles": roles,
        "calibration_source": source,
        "l2": l2,
        "l2_inner_auc": {str(k): v for k, v in inner.items()},
    }
    if val_labels.size:
        analysis = th.threshold_analysis(p_pain=served, labels=val_labels, alpha=alpha, subjects=val_subject_of)
        calibration = th.threshold_analysis(
            p_pain=th.temperature_apply(calibration_p, temperature) if calibration_labels.size else calibration_p,
            labels=calibration_labels,
            alpha=alpha,
            subjects=calibration_subjects,
        )
        for key in ("guarantee", "guarantee_conditional", "calibration_scores"):
            analysis[key] = calibration[key]
        analysis["ece"] = th.expected_calibration_error(p_pain=val_p, labels=val_labels)
        analysis["ece_temperature_scaled"] = th.expected_calibration_error(p_pain=served, labels=val_labels)
        analysis["temperature"] = temperature
        analysis["temperature_fitted"] = fitted
        analysis["temperature_clipped"] = fitted is not None and abs(fitted - temperature) > 1e-9
        analysis["temperature_fitted_on"] = (
            f"validation subjects {', '.join(roles['temperature'])} (NLL); guarantee on "
            f"{source['note']}{'; ' + roles['reuse'] if roles['reuse'] else ''}; 1.0 when fewer "
            f"than {MIN_CALIBRATION_IMAGES} images or one class"
        )
        metrics.update(analysis)
        per_subject = per_subject_accuracy(served, val_labels, val_subject_of)
        metrics["folds"] = per_subject
        metrics.update(subject_summary(per_subject))
    seconds = round(time.perf_counter() - start, 2)
    metrics.update(
        {
            "evaluation": "held-out validation subjects, each frame against its own subject's baseline",
            "backbone": backbone,
            "features": kind,
            "validation_subjects": val_subjects,
            "train_seconds": seconds,
            "best_epoch": None,
            "epochs_run": None,
            "dataset": dataset or {},
        }
    )
    metadata = {
        "architecture": architecture,
        "backbone": backbone,
        "feature_dim": int(x_all.shape[1] if x_all.ndim == 2 else N_FEATURES),
        "actions": list(ACTIONS),
        "classes": list(CLASSES),
        "preprocessing": actions_spec(),
        "temperature": temperature,
        "baseline": {"kind": "neonate", **policy.describe(), "of": "embedding", "reference": reference.tolist()},
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
            "model": described,
            "features": kind,
            "l2": l2,
            "l2_grid": list(L2_GRID),
            "seed": config.seed,
            "finetune": "none",
            "torch": torch.__version__,
        },
    }
    return TrainedModel(model=model, temperature=temperature, metrics=metrics, metadata=metadata, result=None)
