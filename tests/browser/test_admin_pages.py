"""In a real browser: the unit admin's staff, admissions and cameras pages, the honest settings page, the
readable audit log and the ML engineer's models page (issue 13, items 6, 7, 11). Screenshots in docs/screenshots/."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.test_accessibility import _context_for
from tests.factories import FrameFactory, ModelVersionFactory, NeonateFactory, PredictionFactory, TriageCaseFactory
from triage.models import AuditEvent, Device, Neonate, Prediction, User
from triage.services import audit_record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def shoot(page, name: str, full_page: bool = False) -> None:
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture
def signed_in(chromium, live_server):
    contexts = []

    def make(user):
        context = _context_for(chromium, live_server.url, user)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def test_a_unit_admin_adds_a_nurse_admits_a_baby_and_points_a_camera_at_it(
    live_server, signed_in, unit_admin, nurse, device
):
    page = signed_in(unit_admin)
    url = live_server.url

    page.goto(f"{url}/unit/people/")
    page.get_by_label("User name").fill("nadia")
    page.get_by_label("First name").fill("Nadia")
    page.get_by_label("Last name").fill("Okafor")
    page.get_by_label("First password").fill("Lullaby-cot-47")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator(".message--success")).to_contain_text("Nadia Okafor added as nurse")
    page.get_by_role("button", name="Deactivate alice").click()
    expect(page.locator(".message--success")).to_contain_text("deactivated")
    shoot(page, "admin_people", full_page=True)
    assert User.objects.get(username="nadia").unit_id == unit_admin.unit_id
    assert not User.objects.get(username="alice").is_active

    page.get_by_role("link", name="Admissions", exact=True).click()
    page.get_by_label("MRN").fill("MRN-300112")
    page.get_by_label("Bed").fill("12")
    page.get_by_label("Gestational age (weeks)").fill("29.5")
    page.get_by_role("button", name="Admit").click()
    expect(page.locator(".message--success")).to_contain_text("Admitted MRN-300112 to bed 12")

    page.get_by_role("link", name="Cameras", exact=True).click()
    page.get_by_label(f"Baby for {device.name}").select_option(label="bed 12 · MRN-300112")
    page.get_by_role("button", name="Assign").click()
    expect(page.locator(".message--success")).to_contain_text(f"{device.name} now watches bed 12 (MRN-300112)")
    shoot(page, "admin_cameras", full_page=True)
    assert Device.objects.get(pk=device.pk).neonate.mrn == "MRN-300112"

    page.get_by_role("link", name="Admissions", exact=True).click()
    expect(page.locator(".babies-table")).to_contain_text(device.name)
    shoot(page, "admin_babies", full_page=True)
    page.get_by_role("button", name="Discharge bed 12 (MRN-300112)").click()
    expect(page.locator(".message--success")).to_contain_text("Discharged MRN-300112")
    assert not Neonate.objects.get(mrn="MRN-300112").active
    assert Device.objects.get(pk=device.pk).neonate is None
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"user.created", "user.deactivated", "neonate.created", "device.assigned", "neonate.discharged"} <= actions


def test_the_settings_page_prices_thresholds_as_the_bootstrap_routes(live_server, signed_in, unit_admin, unit):
    bootstrap = ModelVersionFactory(
        name="bootstrap-affectnet",
        version="0.1",
        unit=None,
        is_bootstrap=True,
        metrics={
            "accuracy": 1.0,
            "n": 16,
            "n_pain": 6,
            "sensitivity": 1.0,
            "specificity": 1.0,
            "guarantee": {"alpha": 0.05, "threshold": 1.0, "n_calibration": 16, "delta": 0.1},
        },
    )
    baby = NeonateFactory(unit=unit, bed="4", mrn="MRN-204311")
    now = timezone.now()
    for i, p_pain in enumerate([0.97, 0.03, 0.99, 0.95, 0.88, 0.1, 0.52, 0.91]):
        at = now - timedelta(hours=i * 3)
        PredictionFactory(
            frame=FrameFactory(neonate=baby, captured_at=at), model_version=bootstrap, p_pain=p_pain, created_at=at
        )
    Prediction.objects.update(routed_to="nurse")  # what the bootstrap did: it never decides alone

    page = signed_in(unit_admin)
    page.goto(f"{live_server.url}/unit/settings/")

    expect(page.get_by_test_id("never-auto")).to_contain_text("Every frame goes to a nurse at every threshold")
    expect(page.get_by_test_id("actual-share")).to_contain_text("100%")
    expect(page.locator(".workload-table tbody tr").first).to_contain_text("100%")
    expect(page.get_by_test_id("sample-accuracy")).to_contain_text("100.0% of 16 frames (95% interval 81%–100%)")
    expect(page.get_by_test_id("nothing-safe")).to_contain_text("No automatic verdicts are safe yet: label more frames")
    page.locator("#price-title").scroll_into_view_if_needed()
    shoot(page, "settings_price_bootstrap")
    page.get_by_test_id("nothing-safe").scroll_into_view_if_needed()
    shoot(page, "settings_guarantee_none_safe")


def test_the_audit_log_names_beds_and_people_and_groups_image_views(live_server, signed_in, unit_admin, nurse, neonate):
    model = ModelVersionFactory(unit=None)
    prediction = PredictionFactory(frame=FrameFactory(neonate=neonate), model_version=model)
    case = TriageCaseFactory(prediction=prediction)
    audit_record(action="case.claimed", actor=nurse, obj=case)
    for kind, obj in (
        ("crop", prediction),
        ("saliency", prediction),
        ("frame", prediction.frame),
        ("crop", prediction),
    ):
        audit_record(action=f"{kind}.viewed", actor=nurse, obj=obj, unit=neonate.unit)
    audit_record(action="case.released", actor=nurse, obj=case)

    page = signed_in(unit_admin)
    page.goto(f"{live_server.url}/audit/")

    table = page.locator(".audit-table")
    expect(table).to_contain_text(f"case of bed {neonate.bed} · {neonate.mrn}")
    expect(table).to_contain_text("Alice (alice)")
    group = table.locator("details").first
    expect(group).to_contain_text(
        f"4 views: 2 crops, 1 full frame, 1 saliency map of bed {neonate.bed} · {neonate.mrn}"
    )
    group.locator("summary").click()
    expect(group.locator("li")).to_have_count(4)
    shoot(page, "audit_log_readable")


def test_an_ml_engineer_compares_two_models_and_activates_one(live_server, signed_in, ml_engineer, neonate, tmp_path):
    # Activation hashes the bundle with inference.bundle, which imports torch: seconds on a first import.
    # The live server shares this process, so importing it here keeps that out of the click's timeout.
    import inference.bundle  # noqa: F401

    active = ModelVersionFactory(
        name="painnet", version="3", unit=None, metrics={"accuracy": 0.81, "n": 120, "n_pain": 50, "auc": 0.86}
    )
    bundle = tmp_path / "painnet-4.pt"
    bundle.write_bytes(b"weights of painnet 4")
    candidate = ModelVersionFactory(
        name="painnet",
        version="4",
        unit=None,
        status="candidate",
        bundle_path=str(bundle),
        sha256=hashlib.sha256(bundle.read_bytes()).hexdigest(),
        metrics={"accuracy": 0.86, "n": 140, "n_pain": 60, "auc": 0.9, "guarantee": {"threshold": 0.8, "alpha": 0.05}},
    )
    for p_active, p_candidate, nurse_pain in [(0.9, 0.8, True), (0.2, 0.7, True), (0.3, 0.2, False), (0.6, 0.9, True)]:
        frame = FrameFactory(neonate=neonate)
        scored = PredictionFactory(frame=frame, model_version=active, p_pain=p_active)
        PredictionFactory(frame=frame, model_version=candidate, p_pain=p_candidate)
        TriageCaseFactory(prediction=scored, status="decided", final_pain=nurse_pain)

    page = signed_in(ml_engineer)
    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="Models").click()
    expect(page.locator(".models-table")).to_contain_text("86.0% (n = 140; 95% 79%–91%)")
    page.get_by_label("Model A").select_option(label="painnet v4 (candidate)")
    page.get_by_label("Model B").select_option(label="painnet v3 (active)")
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_test_id("compare-verdict")).to_contain_text("No difference shown on 4 nurse-labelled frames")
    shoot(page, "ml_models_compare", full_page=True)

    page.get_by_role("button", name="Activate painnet v4").click()
    expect(page.locator(".message--success")).to_contain_text("painnet v4 is now the active classifier")
    candidate.refresh_from_db()
    active.refresh_from_db()
    assert (candidate.status, active.status) == ("active", "retired")
    shoot(page, "ml_models_activated")
