"""Agreement (Cohen's kappa) per model version: nurse vs nurse and model vs nurse."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch

from annotations.models import NipsAssessment
from triage.models import ModelVersion, Prediction, TriageCase, Unit


def agreement_by_model_version(*, unit: Unit) -> list[dict[str, Any]]:
    """Cohen's kappa per model version: nurse vs nurse (double-scored cases) and model vs nurse.

    Rows ``{"model_version_id", "label", "status", "n_double_scored", "kappa_nurse_nurse",
    "agreement_nurse_nurse", "n_disagreements", "n_disagreements_reviewed", "n_model_nurse", "kappa_model_nurse", "agreement_model_nurse",
    "n_audit", "accuracy_audit", "kappa_audit", "n_uncertain", "agreement_uncertain"}``, newest
    model first. ``*_model_nurse`` pools every nurse-decided case. The live accuracy is
    ``accuracy_audit`` (with ``n_audit``): on blind audit cases, a random share of automatic
    verdicts, so an unbiased estimate of the model's accuracy on the frames it decides by
    itself. ``agreement_uncertain`` (with ``n_uncertain``) is on the frames the model routed to a
    nurse because it was unsure: the hard cases, biased low, not the model's accuracy.
    """
    from inference.thresholds import cohen_kappa

    cases = (
        TriageCase.objects.filter(unit=unit, status=TriageCase.Status.DECIDED)
        .select_related("prediction__model_version", "disagreement")
        .prefetch_related(Prefetch("assessments", queryset=NipsAssessment.objects.order_by("created_at", "id")))
    )
    per_model: dict[int, dict[str, Any]] = {}
    for case in cases:
        version = case.prediction.model_version
        entry = per_model.setdefault(
            version.pk, {"version": version, "pairs": [], "model": [], "audit": [], "reviewed": 0}
        )
        # Each scorer's verdict: the NIPS rule for a full observation, her own call for a face-only
        # or partial review. A pair that disagrees is flagged to the charge nurse and counts here.
        verdicts = [a.pain for a in case.assessments.all() if a.pain is not None]
        if len(verdicts) >= 2:
            entry["pairs"].append((verdicts[0], verdicts[1]))
            flag = getattr(case, "disagreement", None)
            entry["reviewed"] += bool(flag and flag.reviewed_at)
        if case.final_pain is not None:
            pair = (case.prediction.label == Prediction.Label.PAIN, bool(case.final_pain))
            entry["audit" if case.is_audit else "model"].append(pair)
    rows = []
    for entry in sorted(per_model.values(), key=lambda e: e["version"].created_at, reverse=True):
        version: ModelVersion = entry["version"]
        pairs, uncertain, audit = entry["pairs"], entry["model"], entry["audit"]
        model = uncertain + audit
        rows.append(
            {
                "model_version_id": version.pk,
                "label": version.label,
                "status": version.status,
                "n_double_scored": len(pairs),
                "kappa_nurse_nurse": cohen_kappa([a for a, _ in pairs], [b for _, b in pairs]),
                "agreement_nurse_nurse": _share_equal(pairs),
                "n_disagreements": sum(a != b for a, b in pairs),
                "n_disagreements_reviewed": entry["reviewed"],
                "n_model_nurse": len(model),
                "kappa_model_nurse": cohen_kappa([a for a, _ in model], [b for _, b in model]),
                "agreement_model_nurse": _share_equal(model),
                "n_audit": len(audit),
                "accuracy_audit": _share_equal(audit),
                "kappa_audit": cohen_kappa([a for a, _ in audit], [b for _, b in audit]),
                "n_uncertain": len(uncertain),
                "agreement_uncertain": _share_equal(uncertain),
            }
        )
    return rows


def _share_equal(pairs: list[tuple[bool, bool]]) -> float | None:
    """Share of pairs whose two verdicts agree; None when there are none."""
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None
