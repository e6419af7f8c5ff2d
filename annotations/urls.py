"""Browser routes built on nurse decisions.

``urlpatterns``: the ``annotations`` namespace, mounted at /annotations/ (form posts, the export page).
``ward_urlpatterns``: pages of the ``triage`` namespace (the dashboard is the root URL), mounted at /
together with ``triage.urls`` by ``neopain_site.urls``.
"""

from django.urls import path

from annotations import views

app_name = "annotations"

urlpatterns = [
    path("cases/<int:case_id>/assessment/", views.assessment_submit, name="assessment_create"),
    path("cases/<int:case_id>/face-box/", views.face_box_submit, name="facebox_create"),
    path("export/", views.export_page, name="export"),
    path("models/", views.models_page.models_page, name="models"),
    path("models/<int:pk>/activate/", views.models_page.model_activate, name="model_activate"),
    path("models/<int:pk>/compare/", views.models_page.model_compare_request, name="model_compare"),
]

ward_urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("cases/<int:pk>/", views.case_detail, name="case_detail"),
    path("cases/<int:pk>/claim/", views.case_claim, name="case_claim"),
    path("cases/<int:pk>/release/", views.case_release, name="case_release"),
    path("cases/<int:pk>/bedside/", views.case_bedside, name="case_bedside"),
    path("cases/<int:pk>/disagreement/review/", views.case_disagreement_review, name="case_disagreement_review"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="alert_acknowledge"),
    path("neonates/", views.neonates, name="neonates"),
    path("neonates/<int:pk>/timeline/", views.neonate_timeline, name="neonate_timeline"),
    path("unit/settings/", views.unit_settings, name="unit_settings"),
]
