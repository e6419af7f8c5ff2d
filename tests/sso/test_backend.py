"""Single sign-on without a provider: claims to role and unit, accounts created, followed or refused,
the ID token checks mozilla-django-oidc leaves out, and passwords switched off."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import authenticate
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.test import Client, RequestFactory

from neopain_site.sso_settings import csp_with_provider, parse_claim_map
from tests.factories import UserFactory
from tests.sso.conftest import ROLE_MAP
from triage.models import AuditEvent, ExternalIdentity, Role, User
from triage.services.sso import sso_sign_in
from triage.sso import backends
from triage.sso.backends import OIDCBackend
from triage.sso.claims import SsoRefused, claim_values, role_from_claims, unit_code_from_claims

ISSUER = "https://idp.example.org"


def claims(sub="s-1", *, roles=("NeoPain.Nurse",), unit="north", **extra):
    return {"sub": sub, "roles": list(roles), "neopain_unit": unit, "preferred_username": "a.nurse", **extra}


# Claims to role and unit (pure) ----------------------------------------------------------------------


def test_the_first_role_of_the_map_the_person_carries_wins():
    both = {"roles": ["NeoPain.Nurse", "NeoPain.UnitAdmin"]}

    assert role_from_claims(both, claim="roles", role_map=ROLE_MAP, provider="X") == "unit_admin"
    assert role_from_claims({"roles": "NeoPain.Nurse"}, claim="roles", role_map=ROLE_MAP, provider="X") == "nurse"


def test_a_nested_claim_is_read_by_its_dotted_path():
    keycloak = {"realm_access": {"roles": ["offline_access", "NeoPain.ML"]}}

    assert claim_values(keycloak, "realm_access.roles") == ["offline_access", "NeoPain.ML"]
    assert role_from_claims(keycloak, claim="realm_access.roles", role_map=ROLE_MAP, provider="X") == "ml_engineer"
    assert claim_values(keycloak, "realm_access.groups") == []


def test_no_mapped_role_is_refused_with_what_was_seen():
    with pytest.raises(SsoRefused) as refused:
        role_from_claims({"roles": ["Other.App"]}, claim="roles", role_map=ROLE_MAP, provider="Hospital ID")

    assert refused.value.code == "no_role"
    assert "Hospital ID" in refused.value.reason
    assert refused.value.seen == {"roles": ["Other.App"]}


def test_units_map_through_the_unit_map_and_nurses_need_exactly_one():
    unit_map = (("grp-nicu-north", "north"), ("grp-nicu-south", "south"))
    groups = {"groups": ["grp-all-staff", "grp-nicu-north"]}

    assert unit_code_from_claims(groups, role="nurse", claim="groups", unit_map=unit_map, provider="X") == "north"
    with pytest.raises(SsoRefused) as none:
        unit_code_from_claims(
            {"groups": ["grp-all-staff"]}, role="nurse", claim="groups", unit_map=unit_map, provider="X"
        )
    with pytest.raises(SsoRefused) as several:
        unit_code_from_claims(
            {"groups": ["grp-nicu-north", "grp-nicu-south"]},
            role="unit_admin",
            claim="groups",
            unit_map=unit_map,
            provider="X",
        )
    assert (none.value.code, several.value.code) == ("no_unit", "several_units")
    # An ML engineer works across units: none or several is no refusal.
    assert unit_code_from_claims({}, role="ml_engineer", claim="groups", unit_map=unit_map, provider="X") is None


def test_the_maps_are_parsed_in_order_and_bad_entries_fail_at_start_up():
    assert parse_claim_map(" a=nurse, b = unit_admin ,", name="M") == (("a", "nurse"), ("b", "unit_admin"))
    assert parse_claim_map("https://x/role=nurse", name="M") == (("https://x/role", "nurse"),)
    with pytest.raises(ImproperlyConfigured, match="device"):
        parse_claim_map("cams=device", name="M", allowed=("nurse", "unit_admin", "ml_engineer"))
    with pytest.raises(ImproperlyConfigured, match="claim-value=target"):
        parse_claim_map("nurse", name="M")


def test_the_policy_lets_forms_reach_the_provider_for_sign_out():
    policy = {"DIRECTIVES": {"form-action": ["'self'"], "script-src": ["'self'"]}}

    updated = csp_with_provider(policy, "https://login.example.org/realms/nicu")

    assert updated["DIRECTIVES"]["form-action"] == ["'self'", "https://login.example.org"]
    assert policy["DIRECTIVES"]["form-action"] == ["'self'"]  # not changed in place
    assert csp_with_provider(policy, "") is policy


# Accounts ---------------------------------------------------------------------------------------------


def test_the_first_sign_in_creates_the_account_with_the_mapped_role_and_unit(sso, unit):
    user = sso_sign_in(issuer=ISSUER, claims=claims(email="a.nurse@example.org", given_name="Ann"))

    assert (user.role, user.unit, user.email, user.first_name) == (Role.NURSE, unit, "a.nurse@example.org", "Ann")
    assert not user.has_usable_password()
    assert ExternalIdentity.objects.get(issuer=ISSUER, subject="s-1").user == user
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "sso.account_created",
        "sso.login",
    ]


def test_a_known_identity_signs_in_to_the_same_account_and_follows_the_provider(sso, unit, other_unit):
    first = sso_sign_in(issuer=ISSUER, claims=claims())
    again = sso_sign_in(issuer=ISSUER, claims=claims())
    moved = sso_sign_in(issuer=ISSUER, claims=claims(roles=["NeoPain.UnitAdmin"], unit="south"))

    assert first.pk == again.pk == moved.pk
    assert User.objects.filter(external_identities__isnull=False).count() == 1
    assert (moved.role, moved.unit) == (Role.UNIT_ADMIN, other_unit)
    update = AuditEvent.objects.get(action="sso.account_updated")
    assert (update.before, update.after) == (
        {"role": "nurse", "unit": "north"},
        {"role": "unit_admin", "unit": "south"},
    )


def test_a_local_account_with_the_same_name_is_never_taken_over(sso, unit, nurse):
    assert nurse.username == "alice"

    user = sso_sign_in(issuer=ISSUER, claims=claims(preferred_username="alice"))

    assert user.pk != nurse.pk and user.username == "alice-2"
    nurse.refresh_from_db()
    assert nurse.has_usable_password()


def test_the_same_subject_at_another_issuer_is_another_person(sso, unit):
    one = sso_sign_in(issuer=ISSUER, claims=claims())
    other = sso_sign_in(issuer="https://other-idp.example.org", claims=claims())

    assert one.pk != other.pk


@pytest.mark.parametrize(
    ("claim_set", "code"),
    [
        (claims(roles=["Other.App"]), "no_role"),
        (claims(unit=None), "no_unit"),
        (claims(unit="east"), "unknown_unit"),
        (claims(sub=""), "no_subject"),
    ],
)
def test_claims_that_do_not_map_are_refused_and_nothing_is_created(sso, unit, claim_set, code):
    with pytest.raises(SsoRefused) as refused:
        sso_sign_in(issuer=ISSUER, claims=claim_set)

    assert refused.value.code == code
    assert not ExternalIdentity.objects.exists()
    assert not User.objects.filter(username__startswith="a.nurse").exists()
    event = AuditEvent.objects.get(action="sso.refused")
    assert event.after["reason"] == code and event.actor_username


def test_a_switched_off_account_is_refused(sso, unit):
    user = sso_sign_in(issuer=ISSUER, claims=claims())
    User.objects.filter(pk=user.pk).update(is_active=False)

    with pytest.raises(SsoRefused) as refused:
        sso_sign_in(issuer=ISSUER, claims=claims())

    assert refused.value.code == "account_disabled"
    assert AuditEvent.objects.get(action="sso.refused").actor_id == user.pk


# The backend ------------------------------------------------------------------------------------------


def test_the_provider_backend_never_handles_a_password(sso, nurse, password, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a password sign-in reached the provider")

    monkeypatch.setattr(backends, "provider_metadata", no_network)
    request = RequestFactory().post("/login/")

    assert OIDCBackend().authenticate(request, username="alice", password=password) is None
    assert authenticate(request, username="alice", password=password) == nurse


@pytest.fixture
def signing_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def id_token(key, **overrides):
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "neopain", "sub": "s-1", "iat": now, "exp": now + 300, "nonce": "n-1", **overrides}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="RS256")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"aud": "another-app"}, "Audience"),
        ({"iss": "https://evil.example.org"}, "issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": None}, "aud"),
        ({"aud": ["neopain", "another-app"], "azp": "another-app"}, "authorized party"),
    ],
)
def test_an_id_token_for_another_client_issuer_or_time_is_refused(sso, monkeypatch, signing_key, overrides, error):
    monkeypatch.setattr(backends, "provider_metadata", lambda: {"issuer": ISSUER})
    backend = OIDCBackend()

    assert backend._verify_jws(id_token(signing_key), signing_key.public_key())["sub"] == "s-1"
    with pytest.raises(SuspiciousOperation, match=error):
        backend._verify_jws(id_token(signing_key, **overrides), signing_key.public_key())


def test_an_id_token_signed_with_another_key_is_refused(sso, monkeypatch, signing_key):
    monkeypatch.setattr(backends, "provider_metadata", lambda: {"issuer": ISSUER})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    with pytest.raises(SuspiciousOperation, match="Signature"):
        OIDCBackend()._verify_jws(id_token(stranger), signing_key.public_key())


# Passwords switched off ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "nurse_in", "superuser_in"), [("true", True, True), ("superusers", False, True), ("false", False, False)]
)
def test_local_login_lets_in_whom_neopain_local_login_says(
    sso, settings, nurse, password, mode, nurse_in, superuser_in
):
    UserFactory(username="root", is_superuser=True, is_staff=True)
    settings.NEOPAIN_LOCAL_LOGIN = mode

    assert (authenticate(username="alice", password=password) is not None) is nurse_in
    assert (authenticate(username="root", password=password) is not None) is superuser_in


def test_switching_passwords_off_ends_password_sessions_but_not_api_tokens(sso, settings, nurse, client_for):
    browser = Client()
    browser.force_login(nurse, backend="triage.sso.backends.LocalPasswordBackend")
    assert browser.get("/").status_code == 200

    settings.NEOPAIN_LOCAL_LOGIN = "false"

    assert browser.get("/").status_code == 302
    assert client_for(nurse).get("/api/v1/neonates/").status_code == 200


def test_the_sign_in_page_offers_the_provider_and_hides_passwords_when_off(sso, settings, db):
    page = Client().get("/login/?next=/alerts/").content.decode()
    assert "Sign in with Hospital ID" in page and 'href="/oidc/authenticate/?next=/alerts/"' in page
    assert 'name="password"' in page

    settings.NEOPAIN_LOCAL_LOGIN = "false"
    assert 'name="password"' not in Client().get("/login/").content.decode()


def test_without_a_provider_the_page_is_unchanged_and_the_sso_urls_answer_404(settings, db):
    settings.NEOPAIN_OIDC_ISSUER = ""

    page = Client().get("/login/").content.decode()

    assert "oidc/authenticate" not in page and 'name="password"' in page
    assert Client().get("/oidc/authenticate/").status_code == 404
    assert Client().get("/oidc/callback/?code=x&state=y").status_code == 404


def test_a_provider_that_does_not_answer_gives_a_clear_page(sso, db, monkeypatch):
    sso.NEOPAIN_OIDC_DISCOVERY_URL = "http://127.0.0.1:9/.well-known/openid-configuration"  # discard port: refused

    response = Client().get("/oidc/authenticate/")

    assert response.status_code == 502
    assert "not answering" in response.content.decode()
    assert AuditEvent.objects.get(action="sso.refused").after["reason"] == "provider_unreachable"


# The callback and start-up ----------------------------------------------------------------------------


def _browser_with_state(state: str) -> Client:
    browser = Client()
    session = browser.session
    session["oidc_states"] = {state: {"nonce": "n-1", "code_verifier": "v" * 64, "added_on": time.time()}}
    session.save()
    return browser


def test_a_provider_error_such_as_a_cancelled_sign_in_gets_a_page_and_an_audit_row(sso, db):
    browser = _browser_with_state("st-1")

    response = browser.get(
        "/oidc/callback/", {"error": "access_denied", "error_description": "User cancelled", "state": "st-1"}
    )

    assert response.status_code == 403
    assert "answered “access_denied”: User cancelled" in response.content.decode()
    assert AuditEvent.objects.get(action="sso.refused").after["reason"] == "provider:access_denied"
    assert "st-1" not in browser.session["oidc_states"]  # the state cannot be replayed


def test_a_callback_with_a_state_this_browser_never_sent_is_refused(sso, db):
    browser = _browser_with_state("st-1")

    response = browser.get("/oidc/callback/", {"code": "c", "state": "forged"})

    assert response.status_code == 400
    assert "could not be verified" in response.content.decode()
    assert AuditEvent.objects.get(action="sso.refused").after["reason"] == "invalid_response"
    assert "_auth_user_id" not in browser.session


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEOPAIN_LOCAL_LOGIN": "false"}, "needs NEOPAIN_OIDC_ISSUER"),
        (
            {"NEOPAIN_OIDC_ISSUER": "https://idp.example.org", "NEOPAIN_OIDC_CLIENT_ID": "x"},
            "NEOPAIN_OIDC_CLIENT_SECRET",
        ),
        (
            {
                "NEOPAIN_OIDC_ISSUER": "https://idp.example.org",
                "NEOPAIN_OIDC_CLIENT_ID": "x",
                "NEOPAIN_OIDC_CLIENT_SECRET": "y",
                "NEOPAIN_OIDC_ROLE_MAP": "cams=device",
            },
            "is not one of",
        ),
    ],
)
def test_an_incomplete_or_unsafe_configuration_refuses_to_start(tmp_path, env, message):
    from tests.platform.test_settings import run_settings

    result = run_settings({"NEOPAIN_DATA_DIR": str(tmp_path), **env})

    assert result.returncode != 0 and message in result.stderr, result.stderr[-500:]


def test_the_sign_in_redirect_carries_pkce_state_nonce_and_the_prompt(sso, db, monkeypatch):
    from urllib.parse import parse_qs, urlsplit

    from triage.sso import views

    monkeypatch.setattr(
        views, "provider_metadata", lambda: {"authorization_endpoint": "https://idp.example.org/authorize"}
    )
    sso.OIDC_AUTH_REQUEST_EXTRA_PARAMS = {"prompt": "login"}
    browser = Client()

    response = browser.get("/oidc/authenticate/", {"next": "/alerts/"})

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://idp.example.org/authorize"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == "http://testserver/oidc/callback/"
    assert (query["client_id"], query["response_type"], query["prompt"]) == ("neopain", "code", "login")
    stored = browser.session["oidc_states"][query["state"]]
    assert stored["nonce"] == query["nonce"] and len(stored["code_verifier"]) >= 43
    assert browser.session["oidc_login_next"] == "/alerts/"


def test_userinfo_for_another_subject_is_refused_and_id_token_claims_are_kept(sso, monkeypatch):
    from mozilla_django_oidc.auth import OIDCAuthenticationBackend

    monkeypatch.setattr(
        backends, "provider_metadata", lambda: {"issuer": ISSUER, "userinfo_endpoint": "https://idp/ui"}
    )
    answers = {"s-1": {"sub": "s-1", "email": "a@example.org"}, "other": {"sub": "s-2"}}
    monkeypatch.setattr(OIDCAuthenticationBackend, "get_userinfo", lambda self, token, *args: answers[token])
    id_claims = {"sub": "s-1", "roles": ["NeoPain.Nurse"]}

    merged = OIDCBackend().get_userinfo("s-1", "id-token", id_claims)

    assert merged == {"sub": "s-1", "roles": ["NeoPain.Nurse"], "email": "a@example.org"}
    with pytest.raises(SuspiciousOperation, match="another subject"):
        OIDCBackend().get_userinfo("other", "id-token", id_claims)
