"""API v1 routes for nurse work (included at /api/v1/ beside triage.api_urls)."""

from django.urls import path

from annotations import apis
from annotations.apis.bedside import CaseBedsideApi
from annotations.apis.disagreements import DisagreementListApi, DisagreementReviewApi

urlpatterns = [
    path("cases/", apis.CaseListApi.as_view(), name="api-case-list"),
    path("cases/<int:pk>/", apis.CaseDetailApi.as_view(), name="api-case-detail"),
    path("cases/<int:pk>/claim/", apis.CaseClaimApi.as_view(), name="api-case-claim"),
    path("cases/<int:pk>/release/", apis.CaseReleaseApi.as_view(), name="api-case-release"),
    path("cases/<int:pk>/heartbeat/", apis.CaseHeartbeatApi.as_view(), name="api-case-heartbeat"),
    path("cases/<int:pk>/assessment/", apis.AssessmentCreateApi.as_view(), name="api-case-assessment"),
    path("cases/<int:pk>/bedside/", CaseBedsideApi.as_view(), name="api-case-bedside"),
    path("cases/<int:pk>/disagreement/review/", DisagreementReviewApi.as_view(), name="api-case-disagreement-review"),
    path("disagreements/", DisagreementListApi.as_view(), name="api-disagreement-list"),
    path("alerts/<int:pk>/acknowledge/", apis.AlertAcknowledgeApi.as_view(), name="api-alert-acknowledge"),
    path("assessments/export.csv", apis.AssessmentExportApi.as_view(), name="api-assessment-export"),
]
