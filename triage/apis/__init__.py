"""REST API v1 for the triage domain: neonates, units, frame/clip ingest, alerts, models, health,
camera heartbeats.

One view per resource, nested Input/Output serializers, querysets scoped to the caller's unit
(another unit's object is a 404). Every error body is JSON with a ``detail`` (:mod:`.errors`).
The list views share :class:`~triage.apis.common.UnitScopedListApi`.
"""

from triage.apis.alerts import AlertListApi, AlertOutputSerializer, AlertSummaryApi
from triage.apis.clips import ClipCreateApi, ClipDetailApi, ClipOutputSerializer
from triage.apis.common import CappedUploadHandler, CappedUploadMixin, UnitScopedListApi, paginate
from triage.apis.devices import DeviceHeartbeatApi
from triage.apis.errors import exception_handler, not_found, server_error
from triage.apis.frames import FrameDetailApi, FrameListCreateApi, FrameOutputSerializer, PredictionOutputSerializer
from triage.apis.health import HealthApi
from triage.apis.model_versions import ModelVersionActivateApi, ModelVersionListApi, ModelVersionOutputSerializer
from triage.apis.neonates import NeonateListCreateApi, NeonateOutputSerializer
from triage.apis.units import UnitDetailApi, UnitListApi, UnitOutputSerializer, UnitSettingsOutputSerializer

__all__ = [
    "AlertListApi",
    "AlertSummaryApi",
    "AlertOutputSerializer",
    "CappedUploadHandler",
    "CappedUploadMixin",
    "ClipCreateApi",
    "ClipDetailApi",
    "ClipOutputSerializer",
    "DeviceHeartbeatApi",
    "FrameDetailApi",
    "FrameListCreateApi",
    "FrameOutputSerializer",
    "HealthApi",
    "ModelVersionActivateApi",
    "ModelVersionListApi",
    "ModelVersionOutputSerializer",
    "NeonateListCreateApi",
    "NeonateOutputSerializer",
    "PredictionOutputSerializer",
    "UnitDetailApi",
    "UnitListApi",
    "UnitOutputSerializer",
    "UnitScopedListApi",
    "UnitSettingsOutputSerializer",
    "exception_handler",
    "not_found",
    "paginate",
    "server_error",
]
