"""Browser routes of the ``triage`` namespace that need only triage: the audit log, the bedside cameras and patient images.

The rest of the namespace (the dashboard at the root URL, cases, alerts, neonates, unit settings) is
served by :mod:`annotations.views` and listed in :data:`annotations.urls.ward_urlpatterns`;
``neopain_site.urls`` mounts both lists as one ``triage`` namespace, so every URL name is unchanged.
"""

from django.urls import path

from triage import views

app_name = "triage"

urlpatterns = [
    path("audit/", views.audit_log, name="audit_log"),
    path("unit/devices/", views.devices, name="devices"),
    path("unit/devices/<int:pk>/tokens/new", views.camera_token_create, name="camera_token_create"),
    path("unit/devices/<int:pk>/tokens/rotate", views.camera_token_rotate, name="camera_token_rotate"),
    path("unit/tokens/<int:pk>/revoke", views.api_token_revoke, name="api_token_revoke"),
    path("unit/devices/<int:pk>/assign/", views.device_assign_view, name="device_assign"),
    path("unit/people/", views.unit_admin.people, name="unit_people"),
    path("unit/people/<int:pk>/", views.unit_admin.person_change, name="unit_person_change"),
    path("unit/babies/", views.unit_admin.babies, name="unit_babies"),
    path("unit/babies/<int:pk>/discharge/", views.unit_admin.baby_discharge, name="unit_baby_discharge"),
    # Patient images: never a public media URL; authorised, audited, not cached.
    path("frames/<int:pk>/image", views.frame_image, name="frame_image"),
    path("predictions/<int:pk>/crop", views.prediction_crop, name="prediction_crop"),
    path("predictions/<int:pk>/saliency", views.prediction_saliency, name="prediction_saliency"),
]
