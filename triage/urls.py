"""Browser UI routes. The dashboard (the nurse queue) is the root URL."""

from django.urls import path

from triage import views

app_name = "triage"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("cases/<int:pk>/", views.case_detail, name="case_detail"),
    path("cases/<int:pk>/claim/", views.case_claim, name="case_claim"),
    path("cases/<int:pk>/release/", views.case_release, name="case_release"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="alert_acknowledge"),
    path("neonates/", views.neonates, name="neonates"),
    path("neonates/<int:pk>/timeline/", views.neonate_timeline, name="neonate_timeline"),
    path("unit/settings/", views.unit_settings, name="unit_settings"),
    path("audit/", views.audit_log, name="audit_log"),
    # Patient images: never a public media URL; authorised, audited, not cached.
    path("frames/<int:pk>/image", views.frame_image, name="frame_image"),
    path("predictions/<int:pk>/crop", views.prediction_crop, name="prediction_crop"),
    path("predictions/<int:pk>/saliency", views.prediction_saliency, name="prediction_saliency"),
]
