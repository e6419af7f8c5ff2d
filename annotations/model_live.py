"""Reads for the ML engineer's models page: live figures per model from the ward's own decisions.

Live figures count decided cases (the nurse's final verdict) per model version, blind audit cases
apart from uncertain ones (the uncertain ones are the hard frames, biased low). The live comparison
is paired: only frames that both models scored in service, and for accuracy only those a nurse
decided, so the two figures are on the same frames; which model is right where the other is wrong
is tested with the exact McNemar test. A large p-value says "no difference shown", never "better".
The held-out comparison that runs both bundles on nurse labels is :mod:`annotations.model_comparison`
(a Celery task from the page, or ``manage.py compare_models``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Q

from annotations.model_comparison import _mcnemar_exact
from inference.thresholds import wilson_interval
from triage.models import ModelVersion, Prediction, TriageCase

#: The most recent shared frames a comparison looks at (one query per model, bounded).
COMPARISON_FRAMES = 20_000


def _interval(right: int, n: int) -> dict | None:
    bounds = wilson_interval(right, n)
    return {"n": n, "right": right, "accuracy": right / n, "low": bounds[0], "high": bounds[1]} if bounds else None


def live_by_model(model_ids: Iterable[int]) -> dict[int, dict]:
    """``{model id: {"audit": interval|None, "uncertain": interval|None}}`` over every unit; one query."""
    model_pain = Q(prediction__label=Prediction.Label.PAIN)
    right = (model_pain & Q(final_pain=True)) | (~model_pain & Q(final_pain=False))
    rows = (
        TriageCase.objects.filter(
            status=TriageCase.Status.DECIDED, final_pain__isnull=False, prediction__model_version_id__in=list(model_ids)
        )
        .values("prediction__model_version_id")
        .annotate(
            n_audit=Count("pk", filter=Q(is_audit=True)),
            right_audit=Count("pk", filter=Q(is_audit=True) & right),
            n_uncertain=Count("pk", filter=Q(is_audit=False)),
            right_uncertain=Count("pk", filter=Q(is_audit=False) & right),
        )
    )
    return {
        row["prediction__model_version_id"]: {
            kind: _interval(row[f"right_{kind}"], row[f"n_{kind}"]) for kind in ("audit", "uncertain")
        }
        for row in rows
    }


def models_compare_live(*, a: ModelVersion, b: ModelVersion, limit: int = COMPARISON_FRAMES) -> dict:
    """Both models on the frames both scored: agreement, and accuracy against the nurse where she decided."""
    labels = {}
    for model in (a, b):
        labels[model.pk] = dict(
            Prediction.objects.filter(model_version=model)
            .order_by("-created_at")
            .values_list("frame_id", "label")[:limit]
        )
    shared = labels[a.pk].keys() & labels[b.pk].keys()
    # The nurse's verdict on a frame is on the case of whichever model routed it there.
    decided = TriageCase.objects.filter(
        status=TriageCase.Status.DECIDED, final_pain__isnull=False, prediction__model_version_id__in=[a.pk, b.pk]
    ).values_list("prediction__frame_id", "final_pain")
    nurse = {frame_id: pain for frame_id, pain in decided if frame_id in shared}
    agree = sum(1 for f in shared if labels[a.pk][f] == labels[b.pk][f])
    right_a = right_b = only_a = only_b = 0
    for frame_id, pain in nurse.items():
        truth = Prediction.Label.PAIN if pain else Prediction.Label.NONPAIN
        ok_a, ok_b = labels[a.pk][frame_id] == truth, labels[b.pk][frame_id] == truth
        right_a += ok_a
        right_b += ok_b
        only_a += ok_a and not ok_b
        only_b += ok_b and not ok_a
    n_labelled = len(nurse)
    p_value = _mcnemar_exact(only_a, only_b) if only_a + only_b else None
    if not n_labelled:
        verdict = "No frame that both models scored has a nurse verdict yet: nothing to compare accuracy on."
    elif p_value is None or p_value >= 0.05:
        verdict = (
            f"No difference shown on {n_labelled} nurse-labelled frame{'s' if n_labelled != 1 else ''} "
            f"(exact McNemar p = {p_value:.2f})."
            if p_value is not None
            else f"Both models were right or wrong on the same {n_labelled} frames: no difference shown."
        )
    else:
        better = a if only_a > only_b else b
        verdict = (
            f"{better.label} is right more often on the frames where they differ (exact McNemar p = {p_value:.3f})."
        )
    return {
        "a": a,
        "b": b,
        "shared": len(shared),
        "agree": agree,
        "agreement": agree / len(shared) if shared else None,
        "labelled": n_labelled,
        "accuracy_a": _interval(right_a, n_labelled),
        "accuracy_b": _interval(right_b, n_labelled),
        "only_a_right": only_a,
        "only_b_right": only_b,
        "p_value": p_value,
        "verdict": verdict,
    }


#: Stored held-out figures shown side by side: (key, label, kind).
STORED_FIGURES = (
    ("accuracy", "Accuracy (held out)", "pct"),
    ("auc", "AUC", "prob"),
    ("sensitivity", "Sensitivity", "pct"),
    ("specificity", "Specificity", "pct"),
    ("ece", "Calibration error (ECE)", "prob"),
    ("aurc", "Area under risk–coverage", "prob"),
)


def stored_figures(model: ModelVersion) -> dict:
    """The model's stored evaluation: figures, the held-out n with the accuracy interval, the guarantee, history."""
    metrics = model.metrics or {}
    n, accuracy = metrics.get("n"), metrics.get("accuracy")
    ci = None
    if isinstance(n, int) and n > 0 and isinstance(accuracy, (int, float)):
        # The interval from the nearest whole count; the figure shown is the stored one.
        ci = {**_interval(max(0, min(n, round(accuracy * n))), n), "accuracy": float(accuracy)}
    guarantee = metrics.get("guarantee") if isinstance(metrics.get("guarantee"), dict) else {}
    threshold = guarantee.get("threshold")
    return {
        "figures": {key: metrics.get(key) for key, _, _ in STORED_FIGURES},
        "n": n if isinstance(n, int) else None,
        "accuracy_ci": ci,
        "evaluation": metrics.get("evaluation") or metrics.get("dataset") or "",
        "guarantee_threshold": threshold if isinstance(threshold, (int, float)) else None,
        "nothing_safe": bool(guarantee)
        and (bool(guarantee.get("all_to_nurse")) or not isinstance(threshold, (int, float)) or threshold >= 1.0),
        "guarantee_alpha": guarantee.get("alpha"),
        "history": [h for h in metrics.get("previous_evaluations") or [] if isinstance(h, dict)],
    }
