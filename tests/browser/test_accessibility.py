"""axe-core on every page, for every role that opens it, at 100% and at 200% zoom (issue 13, done-when).

axe-playwright-python bundles axe.min.js (no download); ``page.evaluate`` injects it through the
debugger protocol, which the pages' Content-Security-Policy does not cover. Any violation of any
rule axe runs by default (WCAG 2.0/2.1 A and AA, best practices) fails the test with its list.

:data:`PAGES` must name every HTML route: :func:`test_every_html_route_is_checked` walks the URL
resolver and fails on a route that is neither in :data:`PAGES` nor in :data:`NOT_PAGES` (with the
reason it is not a page), so a page added later cannot skip the check.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.factories import AlertFactory, DeviceFactory, ModelVersionFactory, NipsAssessmentFactory, UserFactory
from tests.ui.conftest import make_case
from triage.models import Role
from triage.services import audit_record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# URL name -> (path template, roles that open it). Placeholders are filled from the ``ward`` fixture.
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "login": ("/login/", ("anonymous",)),
    "password_change": ("/password/", ("nurse", "unit_admin", "ml_engineer")),
    "password_change_done": ("/password/done/", ("nurse",)),
    "triage:dashboard": ("/", ("nurse", "unit_admin", "ml_engineer")),
    "triage:case_detail": ("/cases/{case}/", ("nurse", "unit_admin")),
    "triage:alerts": ("/alerts/", ("nurse", "unit_admin")),
    "triage:neonates": ("/neonates/", ("nurse", "unit_admin")),
    "triage:neonate_timeline": ("/neonates/{neonate}/timeline/", ("nurse",)),
    "triage:unit_settings": ("/unit/settings/", ("unit_admin",)),
    "triage:audit_log": ("/audit/", ("unit_admin",)),
    "triage:devices": ("/unit/devices/", ("unit_admin",)),
    "triage:unit_people": ("/unit/people/", ("unit_admin",)),
    "triage:unit_babies": ("/unit/babies/", ("unit_admin",)),
    "annotations:export": ("/annotations/export/", ("nurse",)),
    "annotations:models": ("/annotations/models/", ("ml_engineer",)),
    "ehr:outbox": ("/ehr/outbox/", ("unit_admin",)),
}
# Pages answered to a form POST: (page with the form, button that posts it, role).
POST_PAGES: dict[str, tuple[str, str, str]] = {
    "triage:camera_token_create": ("/unit/devices/", "New token", "unit_admin"),
}
# Error pages a person meets: a refused role (403) and an unknown object (404).
EXTRA_PAGES = [("403", "/unit/settings/", "nurse"), ("404", "/cases/999999/", "nurse")]

# Routes that are not HTML pages, and why.
NOT_PAGES: dict[str, str] = {
    "logout": "POST only, redirects",
    "oidc_authentication_init": "redirects to the identity provider",
    "oidc_authentication_callback": "redirects back from the identity provider",
    "annotations:assessment_create": "form POST, redirects",
    "annotations:facebox_create": "form POST, redirects",
    "annotations:model_activate": "form POST, redirects",
    "annotations:model_compare": "form POST, redirects",
    "triage:case_claim": "form POST, redirects",
    "triage:case_release": "form POST, redirects",
    "triage:case_bedside": "form POST, redirects to the case (its bedside panel is checked there)",
    "triage:case_disagreement_review": "form POST, redirects to the case",
    "metrics": "Prometheus text for the scraper, not a page",
    "triage:alert_acknowledge": "form POST, redirects",
    "triage:device_assign": "form POST, redirects",
    "triage:unit_person_change": "form POST, redirects",
    "triage:unit_baby_discharge": "form POST, redirects",
    "triage:camera_token_rotate": "the cameras page with the new key, as camera_token_create (checked there)",
    "triage:api_token_revoke": "form POST, redirects",
    "ehr:outbox_retry": "form POST, redirects",
    "triage:frame_image": "an image",
    "triage:prediction_crop": "an image",
    "triage:prediction_saliency": "an image",
}
# Whole trees that are not the app's HTML: JSON APIs and Django's own admin.
NOT_PAGE_PREFIXES = ("api/", "django-admin/", "fhir/")

ZOOM_200 = {"viewport": {"width": 683, "height": 384}, "device_scale_factor": 2}  # 1366x768 at 200%


def html_routes() -> dict[str, str]:
    """URL name -> route of every route outside :data:`NOT_PAGE_PREFIXES`."""
    from django.urls import get_resolver
    from django.urls.resolvers import URLResolver

    found: dict[str, str] = {}

    def walk(patterns, prefix: str, namespace: str | None) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace)
            else:
                route = prefix + str(pattern.pattern)
                if route.startswith(NOT_PAGE_PREFIXES):
                    continue
                name = f"{namespace}:{pattern.name}" if namespace else (pattern.name or route)
                found[name] = route

    walk(get_resolver().url_patterns, "", None)
    return found


def test_every_html_route_is_checked():
    routes = html_routes()
    checked = set(PAGES) | set(POST_PAGES) | set(NOT_PAGES)
    unlisted = {name: route for name, route in routes.items() if name not in checked}
    assert unlisted == {}, "add these routes to PAGES (and the ward fixture) or to NOT_PAGES with the reason"
    gone = (set(PAGES) | set(POST_PAGES)) - set(routes)
    assert gone == set(), "PAGES names routes that no longer exist"


@pytest.fixture
def ward(unit, nurse, unit_admin, ml_engineer, neonate, device):
    """A ward with something on every page: a case with a crop, an alert, an assessment, a model, audit rows."""
    model = ModelVersionFactory(
        name="painnet",
        version="3",
        unit=None,
        metrics={"accuracy": 0.875, "n": 16, "n_pain": 6, "guarantee": {"alpha": 0.05, "threshold": 1.0}},
    )
    ModelVersionFactory(name="painnet", version="4", unit=None, status="candidate")
    case = make_case(neonate=neonate, model=model, p_pain=0.52, age_minutes=3)
    decided = make_case(neonate=neonate, model=model, p_pain=0.6, age_minutes=30, status="decided", final_pain=True)
    NipsAssessmentFactory(case=decided, nurse=nurse)
    AlertFactory(neonate=neonate, prediction=decided.prediction)
    device.neonate = neonate
    device.last_seen_at = timezone.now() - timedelta(seconds=30)
    device.save()
    DeviceFactory(unit=unit, name="bed-9-cam")
    audit_record(action="case.claimed", actor=nurse, obj=case)
    for kind in ("crop", "saliency"):
        audit_record(action=f"{kind}.viewed", actor=nurse, obj=case.prediction)
    return {"case": case.pk, "neonate": neonate.pk}


def _context_for(chromium, base_url: str, user, **options):
    """A browser context signed in as ``user`` (a session cookie from Django's test client; None: anonymous)."""
    context = chromium.new_context(**{"viewport": {"width": 1366, "height": 768}, **options})
    context.set_default_timeout(8000)
    if user is not None:
        client = Client()
        client.force_login(user)
        cookie = client.cookies["sessionid"]
        context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": base_url}])
    return context


def _violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
    ]


def _people(request) -> dict:
    people = {name: request.getfixturevalue(name) for name in ("nurse", "unit_admin", "ml_engineer")}
    people["anonymous"] = None
    return people


@pytest.mark.parametrize("zoom", ["100%", "200%"])
def test_no_axe_violation_on_any_page_for_any_role(request, live_server, chromium, ward, zoom):
    people = _people(request)
    options = ZOOM_200 if zoom == "200%" else {}
    # Every role on every page it opens at 100%; at 200% (reflow, not colour or names) one role per page.
    visits = [
        (path.format(**ward), role)
        for path, roles in PAGES.values()
        for role in (roles if zoom == "100%" else roles[:1])
    ]
    visits += [(path, role) for _, path, role in EXTRA_PAGES]
    found: dict[str, list[str]] = {}
    contexts = {}
    try:
        for path, role in visits:
            if role not in contexts:
                contexts[role] = _context_for(chromium, live_server.url, people[role], **options)
            page = contexts[role].new_page()
            response = page.goto(f"{live_server.url}{path}", wait_until="domcontentloaded")
            assert response is not None and response.status < 500, (path, role)
            if path.startswith("/login/") or role == "anonymous":
                assert "/login/" in page.url
            else:
                assert "/login/" not in page.url, f"{role} was sent to sign in at {path}"
            problems = _violations(page)
            if problems:
                found[f"{role} {path}"] = problems
            page.close()
        for name, (path, button, role) in POST_PAGES.items():
            page = contexts[role].new_page()
            page.goto(f"{live_server.url}{path}", wait_until="domcontentloaded")
            page.get_by_role("button", name=button).first.click()
            page.wait_for_load_state("domcontentloaded")
            problems = _violations(page)
            if problems:
                found[f"{role} POST {name}"] = problems
            page.close()
    finally:
        for context in contexts.values():
            context.close()
    assert found == {}, "\n".join(f"{where}: {problems}" for where, problems in found.items())


def test_the_axe_check_can_fail(live_server, chromium, unit_admin):
    """An image without alt text and an unlabelled input added to a page are reported."""
    context = _context_for(chromium, live_server.url, unit_admin)
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/unit/people/")
        page.evaluate(
            "() => { const main = document.querySelector('main');"
            " main.insertAdjacentHTML('beforeend', '<img src=\"/x.png\"><input type=\"text\">'); }"
        )
        ids = {problem.split(" ")[0] for problem in _violations(page)}
    finally:
        context.close()
    assert {"image-alt", "label"} <= ids


def test_an_ml_engineer_and_unit_admin_each_reach_their_pages_without_a_second_sign_in(live_server, chromium):
    """The role's nav links lead to pages, never to a sign-in form (a signed-in unit admin, issue 13)."""
    admin = UserFactory(username="ursula", role=Role.UNIT_ADMIN, is_staff=True)
    context = _context_for(chromium, live_server.url, admin)
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/unit/people/")
        links = page.locator("nav[aria-label=Main] a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        for href in [*links, "/django-admin/"]:
            page.goto(f"{live_server.url}{href}")
            # A sign-in form asks for the *current* password; the password-change page is a page of its own.
            assert "/login/" not in page.url, href
            signin = page.locator("input[autocomplete=current-password]").count() and href != "/password/"
            assert not signin, href
    finally:
        context.close()
