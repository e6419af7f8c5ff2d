"""REST API v1 routes of the triage domain (mounted at /api/v1/)."""

from django.urls import path

from triage import apis

urlpatterns = [
    path("health/", apis.HealthApi.as_view(), name="api-health"),
    path("neonates/", apis.NeonateListCreateApi.as_view(), name="api-neonates"),
    path("units/", apis.UnitListApi.as_view(), name="api-units"),
    path("units/<int:pk>/", apis.UnitDetailApi.as_view(), name="api-unit-detail"),
    path("frames/", apis.FrameListCreateApi.as_view(), name="api-frames"),
    path("frames/<int:pk>/", apis.FrameDetailApi.as_view(), name="api-frame-detail"),
    path("clips/", apis.ClipCreateApi.as_view(), name="api-clips"),
    path("clips/<int:pk>/", apis.ClipDetailApi.as_view(), name="api-clip-detail"),
    path("alerts/", apis.AlertListApi.as_view(), name="api-alerts"),
    path("alerts/summary/", apis.AlertSummaryApi.as_view(), name="api-alerts-summary"),
    path("devices/heartbeat/", apis.DeviceHeartbeatApi.as_view(), name="api-device-heartbeat"),
    path("models/", apis.ModelVersionListApi.as_view(), name="api-models"),
    path("models/<int:pk>/activate/", apis.ModelVersionActivateApi.as_view(), name="api-model-activate"),
]
