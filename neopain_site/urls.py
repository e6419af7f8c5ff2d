"""Root URLs: the browser UI (triage, annotations), the REST API v1 and its schema."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from triage.auth import NeoPainLoginView

urlpatterns = [
    path("login/", NeoPainLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("django-admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include("triage.api_urls")),
    path("api/v1/", include("annotations.api_urls")),
    path("annotations/", include("annotations.urls")),
    path("", include("triage.urls")),
]
