"""FHIR fixtures: a decided nurse case with its NIPS score, an automatic verdict, and a validator that
parses every resource with the fhir.resources models (R4B: the package's R4-line models, see docs/fhir.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from fhir.resources.R4B import get_fhir_model_class

from tests.factories import FrameFactory, NipsAssessmentFactory, PredictionFactory, TriageCaseFactory

#: Codes FHIR R4 binds as required (the models check types and structure, not these value sets).
REQUIRED_CODES = {
    "Observation.status": {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    },
    "Bundle.type": {"searchset", "transaction-response", "batch-response", "collection", "history"},
    "OperationOutcome.severity": {"fatal", "error", "warning", "information"},
    "Device.status": {"active", "inactive", "entered-in-error", "unknown"},
    "CapabilityStatement.status": {"draft", "active", "retired", "unknown"},
}


def fhir_validate(resource: dict):
    """Parse ``resource`` with its fhir.resources model (pydantic: unknown fields and wrong types fail)."""
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    kind = resource["resourceType"]
    for path, allowed in REQUIRED_CODES.items():
        owner, _, field = path.partition(".")
        if owner == kind and field in resource:
            assert resource[field] in allowed, f"{path}={resource[field]!r}"
    if kind == "Bundle":
        for entry in resource.get("entry", []):
            fhir_validate(entry["resource"])
    if kind == "OperationOutcome":
        for issue in resource["issue"]:
            assert issue["severity"] in REQUIRED_CODES["OperationOutcome.severity"]
    return model


@pytest.fixture
def fhir_valid():
    return fhir_validate


def decided_assessment(*, neonate, nurse, model=None, captured_at=None, total=5, pain=True):
    """A nurse-routed prediction, its decided case and the nurse's NIPS score."""
    captured_at = captured_at or timezone.now() - timedelta(minutes=10)
    frame = FrameFactory(neonate=neonate, captured_at=captured_at)
    prediction = PredictionFactory(frame=frame, **({"model_version": model} if model else {}))
    case = TriageCaseFactory(prediction=prediction, status="decided", decided_at=timezone.now(), final_pain=pain)
    return NipsAssessmentFactory(case=case, nurse=nurse, total=total, pain=pain)


def auto_verdict(*, neonate, model=None, captured_at=None, p_pain=0.9):
    frame = FrameFactory(neonate=neonate, captured_at=captured_at or timezone.now() - timedelta(minutes=5))
    return PredictionFactory(frame=frame, p_pain=p_pain, threshold=0.55, **({"model_version": model} if model else {}))


@pytest.fixture
def nips(neonate, nurse, model):
    return decided_assessment(neonate=neonate, nurse=nurse, model=model)


@pytest.fixture
def verdict(neonate, model):
    return auto_verdict(neonate=neonate, model=model)
