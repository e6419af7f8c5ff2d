"""Writes for the triage domain, one module per concern; each service owns its transaction.

``from triage.services import X`` keeps working: this package re-exports every module's services.
Modules inside the package import each other by full module path (never this ``__init__``), and
nothing here imports ``triage.tasks``: enqueueing goes through :mod:`triage.services.enqueue`.

- :mod:`~triage.services.audit`        audit rows, image-view records
- :mod:`~triage.services.units`        per-unit settings
- :mod:`~triage.services.alerts`       alerts to the pain team
- :mod:`~triage.services.registry`     model versions: register, activate
- :mod:`~triage.services.ingest`       frame uploads
- :mod:`~triage.services.clips`        clip uploads and keyframes
- :mod:`~triage.services.enqueue`      publishing tasks by name after commit
- :mod:`~triage.services.claims`       the worker's frame claims
- :mod:`~triage.services.worker`       scoring batches in the worker
- :mod:`~triage.services.predictions`  routing and recording predictions
- :mod:`~triage.services.sweeper`      re-publishing stuck work
- :mod:`~triage.services.neonates`     neonate creation
- :mod:`~triage.services.devices`      bedside camera heartbeats (device health)
- :mod:`~triage.services.tokens`       API tokens: create, rotate, revoke, authenticate
- :mod:`~triage.services.baselines`    per-neonate baselines: rescore, update, rebuild
"""

from triage.services.alerts import alert_escalation_recipients, alert_raise, alerts_escalate
from triage.services.audit import audit_record, client_ip, image_view_record
from triage.services.baselines import baselines_apply, baselines_update, neonate_baseline_rebuild
from triage.services.claims import frames_claim, frames_fail, frames_release
from triage.services.clips import clip_ingest, clip_process, video_sniff
from triage.services.devices import device_heartbeat_record
from triage.services.enqueue import BROKER_PUBLISH_RETRY, clips_enqueue, frames_enqueue, task_publish
from triage.services.ingest import (
    DEVICE_SEEN_RESOLUTION,
    UploadTooLarge,
    frame_captured_at_check,
    frame_ingest,
    upload_read_capped,
)
from triage.services.neonates import neonate_create
from triage.services.predictions import _saliency_image, prediction_record, prediction_route, predictions_record
from triage.services.registry import model_version_activate, model_version_can_manage, model_version_register
from triage.services.sweeper import WAITING_FOR_MODEL, frames_sweep
from triage.services.tokens import (
    IssuedToken,
    TokenRefused,
    api_token_authenticate,
    api_token_can_manage,
    api_token_create,
    api_token_lifetime,
    api_token_revoke,
    api_token_rotate,
)
from triage.services.units import (
    UNIT_SETTINGS_EDITABLE,
    unit_settings_can_change,
    unit_settings_get,
    unit_settings_snapshot,
    unit_settings_update,
)
from triage.services.worker import FramesRetry, _frames_score_batch, _pipeline_for, frames_process, pipelines_warm

__all__ = [
    "BROKER_PUBLISH_RETRY",
    "DEVICE_SEEN_RESOLUTION",
    "UNIT_SETTINGS_EDITABLE",
    "WAITING_FOR_MODEL",
    "FramesRetry",
    "IssuedToken",
    "TokenRefused",
    "UploadTooLarge",
    "_frames_score_batch",
    "_pipeline_for",
    "_saliency_image",
    "alert_escalation_recipients",
    "alert_raise",
    "alerts_escalate",
    "api_token_authenticate",
    "api_token_can_manage",
    "api_token_create",
    "api_token_lifetime",
    "api_token_revoke",
    "api_token_rotate",
    "audit_record",
    "baselines_apply",
    "baselines_update",
    "client_ip",
    "clip_ingest",
    "device_heartbeat_record",
    "clip_process",
    "clips_enqueue",
    "frame_captured_at_check",
    "frame_ingest",
    "frames_claim",
    "frames_enqueue",
    "frames_fail",
    "frames_process",
    "frames_release",
    "frames_sweep",
    "image_view_record",
    "model_version_activate",
    "model_version_can_manage",
    "model_version_register",
    "neonate_baseline_rebuild",
    "neonate_create",
    "pipelines_warm",
    "prediction_record",
    "prediction_route",
    "predictions_record",
    "task_publish",
    "unit_settings_can_change",
    "unit_settings_get",
    "unit_settings_snapshot",
    "unit_settings_update",
    "upload_read_capped",
    "video_sniff",
]
