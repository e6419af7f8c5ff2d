"""The ehr app's browser pages (mounted at /ehr/ by neopain_site.urls)."""

from django.urls import path

from ehr import views

app_name = "ehr"

urlpatterns = [
    path("outbox/", views.outbox, name="outbox"),
    path("outbox/<int:pk>/retry", views.outbox_retry, name="outbox_retry"),
]
