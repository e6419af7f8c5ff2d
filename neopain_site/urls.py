"""Root URLs: the browser UI (triage, annotations), the REST API v1 and its schema."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotations.urls import ward_urlpatterns
from triage import urls as triage_urls
from triage.admin_site import NOT_FOR_YOU
from triage.auth import NeoPainLoginView, NeoPainPasswordChangeView
from triage.sso.views import NeoPainLogoutView
from triage.views.metrics import metrics


def admin_login(request, *args, **kwargs):
    """The Django admin's sign-in: the app's throttled form, or a 403 for someone signed in already."""
    from django.core.exceptions import PermissionDenied
    from django.shortcuts import redirect

    if request.user.is_authenticated:
        if not request.user.is_superuser:
            raise PermissionDenied(NOT_FOR_YOU)
        return redirect("admin:index")
    return NeoPainLoginView.as_view(redirect_authenticated_user=False)(request, *args, **kwargs)


urlpatterns = [
    path("login/", NeoPainLoginView.as_view(), name="login"),
    # Also ends the identity provider's session when the provider signed the person in (triage.sso).
    path("logout/", NeoPainLogoutView.as_view(), name="logout"),
    path("oidc/", include("triage.sso.urls")),
    path("password/", NeoPainPasswordChangeView.as_view(), name="password_change"),
    path(
        "password/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name="registration/password_change_done.html"),
        name="password_change_done",
    ),
    # One throttled sign-in form for everyone: the admin's own would bypass the failed-login throttle.
    # A signed-in person without admin rights gets a 403 saying so, never a second sign-in form.
    path("django-admin/login/", admin_login),
    path("django-admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # GET only: the HTML-only view has no template for an OPTIONS answer (a 500). The split view
    # serves its start-up script from this same URL (``?script=``): no inline script (CSP).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", http_method_names=["get", "head"]),
        name="swagger-ui",
    ),
    path("api/v1/", include("triage.api_urls")),
    # Prometheus (docs/operations.md): a bearer token or an address allow-list, not a session.
    path("metrics", metrics, name="metrics"),
    path("api/v1/", include("annotations.api_urls")),
    path("annotations/", include("annotations.urls")),
    # FHIR R4 for the EHR (docs/fhir.md): every answer application/fhir+json, every error an OperationOutcome.
    path("fhir/", include("ehr.urls")),
    path("ehr/", include("ehr.page_urls")),
    # One ``triage`` namespace for the ward pages, whichever app serves them (see triage/urls.py).
    path("", include((ward_urlpatterns + triage_urls.urlpatterns, triage_urls.app_name))),
]

# Under /api/ even an unmatched path or a crash answers JSON with a ``detail``.
handler404 = "triage.apis.not_found"
handler500 = "triage.apis.server_error"
