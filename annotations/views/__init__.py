"""Server-rendered pages built on nurse decisions: the queue, the case page and its forms, alerts,
the neonate timeline, the unit settings page and the export page.

Every view checks the role on the server (:mod:`triage.views.access`) and scopes rows to the caller's
unit in the selectors (another unit's object is a 404).
"""

from annotations.views import models_page
from annotations.views.assessment import (
    NIPS_CHOICES,
    assessment_submit,
    case_bedside,
    case_claim,
    case_context,
    case_detail,
    case_disagreement_review,
    case_release,
    face_box_submit,
)
from annotations.views.export_page import export_page
from annotations.views.queue import POLL_SECONDS, QUEUE_LIMIT, dashboard
from annotations.views.unit_settings import unit_settings
from annotations.views.ward import alert_acknowledge, alerts, neonate_timeline, neonates

__all__ = [
    "NIPS_CHOICES",
    "POLL_SECONDS",
    "QUEUE_LIMIT",
    "alert_acknowledge",
    "alerts",
    "assessment_submit",
    "case_bedside",
    "case_claim",
    "case_context",
    "case_disagreement_review",
    "case_detail",
    "case_release",
    "dashboard",
    "export_page",
    "models_page",
    "face_box_submit",
    "neonate_timeline",
    "neonates",
    "unit_settings",
]
