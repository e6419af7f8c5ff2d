"""Browser routes for nurse decisions (mounted at /annotations/)."""

from django.urls import path

from annotations import views

app_name = "annotations"

urlpatterns = [
    path("cases/<int:case_id>/assessment/", views.assessment_submit, name="assessment_create"),
    path("cases/<int:case_id>/face-box/", views.face_box_submit, name="facebox_create"),
    path("export/", views.export_page, name="export"),
]
