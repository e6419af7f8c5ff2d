"""Candidate vs active model on the same held-out nurse-labelled data (exact McNemar test)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from django.db import transaction

from annotations.model_metrics import unit_alpha, unit_threshold
from annotations.training_sets import training_set_export
from triage.models import ModelVersion, Unit


def _mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def training_hashes(model_version: ModelVersion | None) -> set[str]:
    """sha256 of every image file the model's weights were trained on (its bundle's training data)."""
    if model_version is None:
        return set()
    data = (model_version.metadata or {}).get("training_data") or {}
    return set(data.get("train_sha256") or [])


def models_compare(
    *,
    candidate: ModelVersion,
    active: ModelVersion | None = None,
    dataset: str | os.PathLike[str] | None = None,
    unit: Unit | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    label_source: str = "nips_rule",
) -> dict[str, Any]:
    """Score candidate and active on the same nurse-labelled images the candidate never trained on.

    ``dataset``: a dataset folder or manifest; default, the unit's nurse labels exported
    afresh, labelled by ``label_source`` (``--label-source``). Images whose file hash is in either model's training split are left out (the
    candidate's validation subjects and every label since it was trained remain).
    Returns per-model figures at the unit's threshold and missed-pain target, and an
    exact McNemar test on the paired verdicts.
    """
    from inference import thresholds as th
    from inference import training as tr
    from inference.baseline import model_evaluate_p_pain
    from inference.bundle import load_bundle
    from triage.selectors import active_model_for_unit

    if candidate.kind != ModelVersion.Kind.CLASSIFIER:
        raise ValueError("only classifier versions can be compared")
    unit = unit if unit is not None else candidate.unit
    if active is None:
        active = active_model_for_unit(unit=unit)
        if active is not None and active.pk == candidate.pk:
            active = None
    with tempfile.TemporaryDirectory(prefix="neopain-compare-") as tmp:
        if dataset is None:
            summary = training_set_export(unit=unit, out_dir=tmp, source=label_source)
            source = {
                "kind": "nurse assessments",
                "unit": unit.code if unit else None,
                "excluded": summary["excluded"],
                "label_source": summary["label_source"],
                "label_sources": summary["label_sources"],
                "methods": summary["methods"],
            }
            dataset = tmp
        else:
            source = {"kind": "dataset", "path": str(dataset)}
        images = tr.dataset_read(dataset)
        info = tr.dataset_info(dataset)
        crops = tr.face_crops(
            images, settings=tr.dataset_crop_settings(info), cache_dir=cache_dir or Path(tmp) / "cache", progress=False
        )
    trained_on = training_hashes(candidate) | training_hashes(active)
    keep = [i for i, sha in enumerate(crops.file_sha256) if sha not in trained_on]
    held_out = crops.subset(keep)
    labels = held_out.labels
    alpha = unit_alpha(unit)
    threshold = unit_threshold(unit)
    result: dict[str, Any] = {
        "n": len(keep),
        "n_excluded_training_images": len(crops.images) - len(keep),
        "n_skipped_no_face": len(crops.skipped),
        "source": source,
        "alpha": alpha,
        "unit_threshold": threshold,
        "models": {},
    }
    verdicts: dict[str, Any] = {}
    baseline_crops: dict[str, list] = {}
    for crop, subject in zip(crops.crops, crops.subjects):
        baseline_crops.setdefault(subject, []).append(crop)
    for role, version in (("candidate", candidate), ("active", active)):
        if version is None:
            continue
        loaded = load_bundle(version.bundle_path, expected_sha256=version.sha256)
        # As served: a baseline model judges each frame against its baby's resting baseline, built
        # from all of that baby's frames here (no label read), a model without one frame by frame.
        p_pain, served_as = (
            model_evaluate_p_pain(loaded, held_out.crops, held_out.subjects, baseline_crops=baseline_crops)
            if held_out.crops
            else ([], {"baseline": "none"})
        )
        figures: dict[str, Any] = {
            "id": version.pk,
            "label": version.label,
            "status": version.status,
            "baseline": served_as,
        }
        if len(keep):
            basic = th.binary_metrics(p_pain=p_pain, labels=labels)
            at_threshold = th.threshold_table(p_pain=p_pain, labels=labels, thresholds=[threshold])[0]
            figures.update(
                {
                    "accuracy": basic["accuracy"],
                    "auc": basic["auc"],
                    "sensitivity": basic["sensitivity"],
                    "specificity": basic["specificity"],
                    "kappa_vs_nurse": th.cohen_kappa(list(th.predicted_pain(p_pain)), [bool(v) for v in labels]),
                    "aurc": th.aurc(p_pain=p_pain, labels=labels),
                    "ece": th.expected_calibration_error(p_pain=p_pain, labels=labels),
                    "at_unit_threshold": at_threshold,
                    "guarantee": th.guaranteed_threshold(p_pain=p_pain, labels=labels, alpha=alpha),
                }
            )
            verdicts[role] = th.predicted_pain(p_pain) == (labels == 1)
        result["models"][role] = figures
    if "candidate" in verdicts and "active" in verdicts:
        b = int((verdicts["candidate"] & ~verdicts["active"]).sum())
        c = int((~verdicts["candidate"] & verdicts["active"]).sum())
        p_value = _mcnemar_exact(b, c)
        result["mcnemar"] = {"candidate_right_active_wrong": b, "candidate_wrong_active_right": c, "p_value": p_value}
        if p_value < 0.05:
            result["verdict"] = "candidate better" if b > c else "candidate worse"
        else:
            result["verdict"] = "no significant difference"
    return result


def model_comparison_store(*, candidate: ModelVersion, comparison: dict[str, Any]) -> ModelVersion:
    """Keep the latest comparison with the candidate's metrics (``metrics["comparison"]``)."""
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=candidate.pk)
        metrics = dict(locked.metrics or {})
        metrics["comparison"] = {**comparison, "compared_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        locked.metrics = json.loads(json.dumps(metrics, default=str))
        locked.save(update_fields=["metrics"])
    return locked
