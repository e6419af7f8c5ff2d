"""REST API v1 for nurse work: the case queue, claims, NIPS assessments, alert acknowledgement, CSV export.

Roles: nurses and unit admins read their own unit's cases and alerts; only nurses claim and score.
Another unit's case or alert is a 404. ML engineers and devices get 403. Errors are JSON with a
``detail``; a case that cannot take the action now (held, decided, already scored) is a 409 with a
``code``.
"""

from annotations.apis.assessments import AlertAcknowledgeApi, AssessmentCreateApi
from annotations.apis.cases import (
    CaseClaimApi,
    CaseDetailApi,
    CaseDetailOutputSerializer,
    CaseHeartbeatApi,
    CaseListApi,
    CaseOutputSerializer,
    CaseReleaseApi,
    queue_row,
    queue_rows_json,
)
from annotations.apis.common import AssessmentOutputSerializer, PersonSerializer
from annotations.apis.exports import AssessmentExportApi, CSVRenderer

__all__ = [
    "AlertAcknowledgeApi",
    "AssessmentCreateApi",
    "AssessmentExportApi",
    "AssessmentOutputSerializer",
    "CSVRenderer",
    "CaseClaimApi",
    "CaseDetailApi",
    "CaseDetailOutputSerializer",
    "CaseHeartbeatApi",
    "CaseListApi",
    "CaseOutputSerializer",
    "CaseReleaseApi",
    "PersonSerializer",
    "queue_row",
    "queue_rows_json",
]
