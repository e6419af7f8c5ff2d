"""``/oidc/``: the provider sign-in. Register ``https://<NeoPain host>/oidc/callback/`` as the redirect URI."""

from django.urls import path

from triage.sso import views

urlpatterns = [
    path("authenticate/", views.SsoStartView.as_view(), name="oidc_authentication_init"),
    path("callback/", views.SsoCallbackView.as_view(), name="oidc_authentication_callback"),
]
