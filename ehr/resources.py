"""FHIR R4 resources built from NeoPain rows: plain dicts, ready to serialise as ``application/fhir+json``.

Codes: no LOINC code for the Neonatal Infant Pain Scale (NIPS) or for an automatic pain verdict could
be confirmed (docs/fhir.md says where we looked), so NIPS items, the total, the verdict and the model's
figures are coded in NeoPain's own CodeSystem (:data:`CODE_SYSTEM`). Codes that do exist are used:
the HL7 observation category ``survey``, v3 ObservationInterpretation ``POS``/``NEG``, data-absent-reason
``not-performed`` and the UCUM unit ``1`` for probabilities.

Times: ``effectiveDateTime`` is when the frame was captured (the moment the baby was observed), for the
model's verdict and the nurse's NIPS score of that frame alike; ``issued`` is when the verdict or the
score was recorded. ``GET /fhir/Observation?date=`` searches ``effectiveDateTime``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings

from annotations.models import NipsAssessment
from triage.models import Alert, ModelVersion, Neonate, Prediction, User

FHIR_VERSION = "4.0.1"
CODE_SYSTEM = "https://neopain.dev/fhir/CodeSystem/neopain"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DATA_ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
UCUM = "http://unitsofmeasure.org"
ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
}

#: NeoPain's own codes, with their displays (also served as ``GET /fhir/CodeSystem/neopain``).
CODES: dict[str, str] = {
    "nips-total": "Neonatal Infant Pain Scale (NIPS) total score",
    "nips-review": "NIPS items observed without a total (face-only review or partial observation)",
    "nips-kind": "Kind of nurse observation (NIPS, face only, partial)",
    "nips-face": "NIPS facial expression",
    "nips-cry": "NIPS cry",
    "nips-breathing": "NIPS breathing pattern",
    "nips-arms": "NIPS arms",
    "nips-legs": "NIPS legs",
    "nips-arousal": "NIPS state of arousal",
    "nips-intubated": "Cry scored as a silent cry (intubated)",
    "nips-rule": "NIPS pain rule in force",
    "nips": "Neonatal Infant Pain Scale (Lawrence et al. 1993)",
    "ai-pain-verdict": "Automatic pain verdict from facial expression",
    "ai-p-pain": "Model probability of pain",
    "ai-confidence": "Model confidence in its verdict",
    "ai-threshold": "Unit confidence threshold for an automatic verdict",
    "ai-route": "Routing of the verdict (auto or nurse)",
    "pain": "Pain",
    "no-pain": "No pain",
    "pain-alert": "Pain alert: call the pain-management team",
}


def _coding(code: str) -> dict:
    return {"system": CODE_SYSTEM, "code": code, "display": CODES[code]}


def _concept(code: str, text: str | None = None) -> dict:
    return {"coding": [_coding(code)], "text": text or CODES[code]}


def instant(value: datetime) -> str:
    """An aware datetime as a FHIR ``instant`` (UTC, seconds precision at least)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def mrn_system() -> str:
    return settings.NEOPAIN_FHIR_MRN_SYSTEM


def identifier_system(kind: str) -> str:
    return f"{settings.NEOPAIN_FHIR_IDENTIFIER_SYSTEM}/{kind}"


def patient_reference(neonate: Neonate) -> dict:
    return {
        "reference": f"Patient/{neonate.pk}",
        "identifier": {"system": mrn_system(), "value": neonate.mrn},
    }


def practitioner_reference(user: User) -> dict:
    return {
        "reference": f"Practitioner/{user.pk}",
        "identifier": {"system": identifier_system("user"), "value": user.username},
        "display": user.get_full_name() or user.username,
    }


def device_reference(model: ModelVersion) -> dict:
    return {
        "reference": f"Device/{model.pk}",
        "identifier": {"system": identifier_system("model-weights-sha256"), "value": model.sha256},
        "display": model.label,
    }


def observation_reference(resource_id: str) -> dict:
    return {
        "reference": f"Observation/{resource_id}",
        "identifier": {"system": identifier_system("observation"), "value": resource_id},
    }


def _interpretation(pain: bool, text: str) -> list[dict]:
    return [
        {
            "coding": [
                _coding("pain" if pain else "no-pain"),
                {"system": INTERPRETATION_SYSTEM, "code": "POS" if pain else "NEG"},
            ],
            "text": text,
        }
    ]


def _absent() -> dict:
    return {"coding": [{"system": DATA_ABSENT_SYSTEM, "code": "not-performed"}]}


def nips_observation(assessment: NipsAssessment) -> dict:
    """A nurse's NIPS score: one component per item, the total, pain / no pain by the stored rule.

    Expects ``case__prediction__frame`` and ``case__neonate`` loaded (selectors do it in one query).
    """
    case = assessment.case
    components: list[dict] = []
    for item, score in assessment.items().items():
        component: dict = {"code": _concept(f"nips-{item}")}
        if score is None:
            component["dataAbsentReason"] = _absent()
        else:
            component["valueInteger"] = int(score)
        components.append(component)
    components.append({"code": _concept("nips-intubated"), "valueBoolean": bool(assessment.intubated)})
    components.append({"code": _concept("nips-rule"), "valueString": assessment.rule})
    components.append({"code": _concept("nips-kind"), "valueString": assessment.kind_label})
    full = assessment.kind == "nips"
    observation: dict = {
        "resourceType": "Observation",
        "id": f"nips-{assessment.pk}",
        "meta": {"lastUpdated": instant(assessment.created_at)},
        "identifier": [{"system": identifier_system("observation"), "value": f"nips-{assessment.pk}"}],
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "survey", "display": "Survey"}]}],
        "code": _concept("nips-total" if full else "nips-review"),
        "subject": patient_reference(case.neonate),
        # When the nurse observed the baby (at the cot, on video) if she recorded it, else the frame's capture.
        "effectiveDateTime": instant(assessment.observed_at or case.prediction.frame.captured_at),
        "issued": instant(assessment.created_at),
        "performer": [practitioner_reference(assessment.nurse)],
        "method": {"coding": [_coding("nips")], "text": f"NIPS, {assessment.method_label}"},
        "derivedFrom": [observation_reference(f"ai-{case.prediction_id}")],
        "component": components,
    }
    if assessment.total is None:
        observation["dataAbsentReason"] = _absent()
    else:
        observation["valueInteger"] = int(assessment.total)
    if assessment.pain is not None:
        verdict = "Pain" if assessment.pain else "No pain"
        # A face-only or partial review has no total: its verdict is the nurse's own call (issue 13).
        how = f"by rule {assessment.rule}" if assessment.kind == "nips" else f"nurse's call, {assessment.kind_label}"
        observation["interpretation"] = _interpretation(assessment.pain, f"{verdict} {how}")
    notes = [text for text in (assessment.unable_reason, assessment.note) if text]
    if notes:
        observation["note"] = [{"text": text} for text in notes]
    return observation


def _probability(code: str, value: float) -> dict:
    return {
        "code": _concept(code),
        "valueQuantity": {"value": round(float(value), 6), "unit": "probability", "system": UCUM, "code": "1"},
    }


def ai_observation(prediction: Prediction) -> dict:
    """The model's verdict on one frame: label, probability, confidence, threshold, model as device + method.

    An automatic verdict (confidence at or above the threshold) is ``final``; one routed to a nurse is
    ``preliminary`` (the nurse's NIPS Observation, ``derivedFrom`` it, is the decision).
    """
    pain = prediction.label == Prediction.Label.PAIN
    model = prediction.model_version
    auto = prediction.routed_to == Prediction.Route.AUTO
    return {
        "resourceType": "Observation",
        "id": f"ai-{prediction.pk}",
        "meta": {"lastUpdated": instant(prediction.created_at)},
        "identifier": [{"system": identifier_system("observation"), "value": f"ai-{prediction.pk}"}],
        "status": "final" if auto else "preliminary",
        "code": _concept("ai-pain-verdict"),
        "subject": patient_reference(prediction.frame.neonate),
        "effectiveDateTime": instant(prediction.frame.captured_at),
        "issued": instant(prediction.created_at),
        "valueCodeableConcept": _concept("pain" if pain else "no-pain"),
        "interpretation": _interpretation(pain, f"{'Pain' if pain else 'No pain'} (model {model.label})"),
        "device": device_reference(model),
        "method": {
            "coding": [_coding("ai-pain-verdict")],
            "text": f"{model.label} ({model.architecture or 'painnet'}"
            f"{'/' + model.backbone if model.backbone else ''}, face detector {prediction.detector_name}), "
            f"weights sha256 {prediction.weights_sha256}",
        },
        "component": [
            _probability("ai-p-pain", prediction.p_pain),
            _probability("ai-confidence", prediction.confidence),
            _probability("ai-threshold", prediction.threshold),
            {"code": _concept("ai-route"), "valueString": prediction.routed_to},
        ],
    }


def patient(neonate: Neonate) -> dict:
    """A neonate: identified by MRN only (NeoPain holds no name or birth date)."""
    return {
        "resourceType": "Patient",
        "id": str(neonate.pk),
        "meta": {"lastUpdated": instant(neonate.created_at)},
        "identifier": [{"use": "usual", "system": mrn_system(), "value": neonate.mrn}],
        "active": bool(neonate.active),
    }


def practitioner(user: User) -> dict:
    name = user.get_full_name() or user.username
    return {
        "resourceType": "Practitioner",
        "id": str(user.pk),
        "identifier": [{"system": identifier_system("user"), "value": user.username}],
        "active": bool(user.is_active),
        "name": [{"text": name}],
    }


def device(model: ModelVersion) -> dict:
    """A model version as a software Device: its name, version and weights hash."""
    return {
        "resourceType": "Device",
        "id": str(model.pk),
        "meta": {"lastUpdated": instant(model.created_at)},
        "identifier": [{"system": identifier_system("model-weights-sha256"), "value": model.sha256}],
        "status": "active" if model.status == ModelVersion.Status.ACTIVE else "inactive",
        "deviceName": [{"name": model.label, "type": "model-name"}],
        "type": {"text": f"NeoPain {model.kind} model (software)"},
        "version": [
            {"type": {"text": "model version"}, "value": str(model.version)},
            {"type": {"text": "weights sha256"}, "value": model.sha256},
        ],
    }


def alert_flag(alert: Alert) -> dict:
    """A pain alert as a Flag: active until acknowledged; author the model (automatic) or the nurse."""
    flag: dict = {
        "resourceType": "Flag",
        "id": f"alert-{alert.pk}",
        "meta": {"lastUpdated": instant(alert.last_event_at)},
        "identifier": [{"system": identifier_system("flag"), "value": f"alert-{alert.pk}"}],
        "status": "inactive" if alert.acknowledged_at else "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": "clinical", "display": "Clinical"}]}],
        "code": _concept("pain-alert"),
        "subject": patient_reference(alert.neonate),
        "period": {"start": instant(alert.created_at)},
    }
    if alert.acknowledged_at:
        flag["period"]["end"] = instant(alert.acknowledged_at)
    if alert.source == Alert.Source.AUTO and alert.prediction_id:
        flag["author"] = device_reference(alert.prediction.model_version)
    elif alert.assessment_id:
        flag["author"] = practitioner_reference(alert.assessment.nurse)
    return flag


def for_push(resource: dict) -> dict:
    """The resource as POSTed to another FHIR server: no local id, and references by identifier only
    (``Patient/12`` means nothing there; the MRN, user name, weights hash and observation id do)."""

    def logical(value):
        if isinstance(value, dict):
            if "reference" in value and "identifier" in value:
                return {k: logical(v) for k, v in value.items() if k != "reference"}
            return {k: logical(v) for k, v in value.items()}
        if isinstance(value, list):
            return [logical(v) for v in value]
        return value

    pushed = {k: logical(v) for k, v in resource.items() if k not in ("id", "meta")}
    return pushed


def operation_outcome(status: int, message: str, *, code: str | None = None) -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error" if status < 500 else "fatal",
                "code": code or ISSUE_TYPE.get(status, "processing" if status < 500 else "exception"),
                "diagnostics": message,
            }
        ],
    }


def code_system() -> dict:
    return {
        "resourceType": "CodeSystem",
        "id": "neopain",
        "url": CODE_SYSTEM,
        "name": "NeoPain",
        "title": "NeoPain observation codes",
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "description": "NIPS items and total, and the automatic pain verdict's figures, as NeoPain emits them.",
        "concept": [{"code": code, "display": display} for code, display in CODES.items()],
    }


def searchset(entries: list[dict], *, total: int, self_url: str, next_url: str | None, base: str) -> dict:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {"fullUrl": f"{base}/{entry['resourceType']}/{entry['id']}", "resource": entry, "search": {"mode": "match"}}
            for entry in entries
        ],
    }


__all__ = [
    "CODES",
    "alert_flag",
    "for_push",
    "CODE_SYSTEM",
    "FHIR_VERSION",
    "ai_observation",
    "code_system",
    "device",
    "instant",
    "nips_observation",
    "operation_outcome",
    "patient",
    "patient_reference",
    "practitioner",
    "searchset",
]
