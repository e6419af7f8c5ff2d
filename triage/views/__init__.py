"""Server-rendered pages that need only triage: the audit log, the bedside cameras and the
private patient images.

The pages that read or write nurse decisions (queue, case, alerts, timeline, unit settings) live in
:mod:`annotations.views`, above this app; they share the role checks of :mod:`triage.views.access`.
"""

from triage.views import unit_admin
from triage.views.access import CLINICAL, has_role, is_poll, page_number, role_required
from triage.views.audit_log import audit_log
from triage.views.devices import (
    api_token_revoke,
    camera_token_create,
    camera_token_rotate,
    device_assign_view,
    devices,
)
from triage.views.images import frame_image, prediction_crop, prediction_saliency

__all__ = [
    "CLINICAL",
    "api_token_revoke",
    "audit_log",
    "camera_token_create",
    "camera_token_rotate",
    "device_assign_view",
    "devices",
    "frame_image",
    "has_role",
    "is_poll",
    "page_number",
    "prediction_crop",
    "prediction_saliency",
    "role_required",
    "unit_admin",
]
