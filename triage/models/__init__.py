"""Core data model, one module per concern; every model is importable from ``triage.models``.

- :mod:`triage.models.units`: units and their settings, people and roles, neonates, bedside cameras.
- :mod:`triage.models.frames`: clips, frames, model versions, predictions (and their upload paths).
- :mod:`triage.models.cases`: triage cases, alerts, the append-only audit log.
- :mod:`triage.models.tokens`: API tokens (hashed, expiring, revocable).
- :mod:`triage.models.baselines`: each neonate's baseline per model version.
- :mod:`triage.models.identities`: accounts at an identity provider (single sign-on).
"""

from triage.models.units import Device, Neonate, Role, Unit, UnitSettings, User  # noqa: I001 (order: units first)
from triage.models.frames import (
    Clip,
    Frame,
    ModelVersion,
    Prediction,
    clip_upload_to,
    crop_upload_to,
    frame_upload_to,
    private_upload_name,
    saliency_upload_to,
)
from triage.models.cases import Alert, AppendOnlyQuerySet, AuditEvent, TriageCase
from triage.models.tokens import TOKEN_PREFIX_LENGTH, ApiToken, token_digest
from triage.models.baselines import NeonateBaseline
from triage.models.identities import ExternalIdentity

__all__ = [
    "TOKEN_PREFIX_LENGTH",
    "Alert",
    "ApiToken",
    "AppendOnlyQuerySet",
    "AuditEvent",
    "Clip",
    "Device",
    "ExternalIdentity",
    "Frame",
    "ModelVersion",
    "Neonate",
    "NeonateBaseline",
    "Prediction",
    "Role",
    "TriageCase",
    "Unit",
    "UnitSettings",
    "User",
    "clip_upload_to",
    "crop_upload_to",
    "frame_upload_to",
    "private_upload_name",
    "saliency_upload_to",
    "token_digest",
]
