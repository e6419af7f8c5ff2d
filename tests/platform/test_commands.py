"""Management commands: neopain_setup, register_model, activate_model, sweep_frames, and Django's own."""

from __future__ import annotations

import io
import json
import shutil
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.factories import FrameFactory, ModelVersionFactory
from triage import services
from triage.models import ApiToken, AuditEvent, Device, Frame, ModelVersion, Neonate, Role, Unit, User

pytestmark = pytest.mark.django_db


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def models_dir(settings, tmp_path, bootstrap_bundle):
    """Point MODELS_DIR at a folder that already holds the session's bootstrap bundle (no rebuild)."""
    settings.MODELS_DIR = tmp_path / "models"
    settings.MODELS_DIR.mkdir()
    shutil.copyfile(bootstrap_bundle, settings.MODELS_DIR / "bootstrap-fer-proxy.pt")
    return settings.MODELS_DIR


def test_setup_creates_the_demo_unit_people_device_and_model(models_dir, monkeypatch):
    monkeypatch.delenv("NEOPAIN_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("NEOPAIN_NURSE_PASSWORD", raising=False)

    output = run("neopain_setup")

    unit = Unit.objects.get(code="demo")
    assert unit.name == "NICU Demo"
    admin, nurse = User.objects.get(username="unitadmin"), User.objects.get(username="nurse")
    assert (admin.role, admin.unit, nurse.role, nurse.unit) == (Role.UNIT_ADMIN, unit, Role.NURSE, unit)
    assert admin.groups.filter(name="unit_admin").exists() and nurse.groups.filter(name="nurse").exists()
    device = Device.objects.get(unit=unit)
    key = output.split("Device token for camera-bed-1: ")[1].split()[0]
    assert services.api_token_authenticate(key=key)[0] == device.user
    token = ApiToken.objects.get(user=device.user)
    assert token.kind == "device" and token.digest != key and key not in token.digest  # stored hashed
    assert timedelta(days=364) < token.expires_at - timezone.now() <= timedelta(days=365)
    assert Neonate.objects.get(mrn="DEMO-0001").unit == unit
    model = ModelVersion.objects.get(status="active")
    assert model.is_bootstrap and "NOT a trained pain model" in output
    # The generated passwords work and are shown exactly once.
    admin_password = output.split("unitadmin / ")[1].split()[0]
    assert admin.check_password(admin_password)
    assert 'curl -H "Authorization: Token $NEOPAIN_DEVICE_TOKEN" -F neonate=DEMO-0001 -F image=@face.jpg' in output


def test_setup_twice_changes_nothing_and_prints_no_secret(models_dir):
    first = run("neopain_setup")
    token = first.split("Device token for camera-bed-1: ")[1].split()[0]
    admin_hash = User.objects.get(username="unitadmin").password

    second = run("neopain_setup")

    assert token in first and token not in second
    assert " / " not in second  # no "user / password" line
    assert User.objects.get(username="unitadmin").password == admin_hash
    assert (Unit.objects.count(), User.objects.count(), ModelVersion.objects.count()) == (1, 3, 1)


def test_setup_takes_passwords_from_the_environment(models_dir, monkeypatch):
    monkeypatch.setenv("NEOPAIN_ADMIN_PASSWORD", "admin-from-env-123")
    monkeypatch.setenv("NEOPAIN_NURSE_PASSWORD", "nurse-from-env-456")

    output = run("neopain_setup", "--skip-model")

    assert User.objects.get(username="unitadmin").check_password("admin-from-env-123")
    assert User.objects.get(username="nurse").check_password("nurse-from-env-456")
    assert "admin-from-env-123" not in output and "nurse-from-env-456" not in output
    assert not ModelVersion.objects.exists()


def test_setup_keeps_an_already_active_model(models_dir):
    trained = ModelVersionFactory(status="active", unit=None, name="painnet-north")

    output = run("neopain_setup")

    assert ModelVersion.objects.get(status="active") == trained
    assert "painnet-north" in output


def test_setup_generates_different_passwords_each_install(models_dir):
    first = run("neopain_setup", "--skip-model").split("unitadmin / ")[1].split()[0]
    User.objects.filter(username__in=["unitadmin", "nurse"]).delete()

    second = run("neopain_setup", "--skip-model").split("unitadmin / ")[1].split()[0]

    assert first != second and len(first) >= 12


def test_register_model_activates_on_request(bootstrap_bundle, unit):
    output = run("register_model", str(bootstrap_bundle), "--activate", "--unit", unit.code)

    model = ModelVersion.objects.get()
    assert (model.status, model.unit) == ("active", unit)
    assert model.sha256 in output and "active" in output


def test_register_model_stores_metrics_from_a_file(bootstrap_bundle, tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc": 0.81}))

    run("register_model", str(bootstrap_bundle), "--metrics", str(metrics))

    assert ModelVersion.objects.get().metrics == {"auc": 0.81}


def test_register_model_explains_a_bad_bundle(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")

    with pytest.raises(CommandError, match="Not a valid model bundle"):
        run("register_model", str(junk))


def test_register_model_refuses_an_unknown_unit(bootstrap_bundle):
    with pytest.raises(CommandError, match="No unit with code 'nope'"):
        run("register_model", str(bootstrap_bundle), "--unit", "nope")


def test_activate_model_by_id(bootstrap_bundle):
    run("register_model", str(bootstrap_bundle))
    model = ModelVersion.objects.get()

    run("activate_model", str(model.pk))

    model.refresh_from_db()
    assert model.status == "active"


def test_activate_model_explains_an_unknown_id(db):
    with pytest.raises(CommandError, match="No model version 999"):
        run("activate_model", "999")


def test_sweep_frames_requeues_stuck_frames(neonate, monkeypatch):
    from triage.services import enqueue

    published = []
    monkeypatch.setattr(enqueue, "frames_enqueue", lambda *, frame_ids: published.extend(frame_ids) or len(frame_ids))
    frame = FrameFactory(neonate=neonate, status="processing")
    Frame.objects.filter(pk=frame.pk).update(status_changed_at=timezone.now() - timedelta(hours=1))

    output = run("sweep_frames")

    assert published == [frame.pk]
    assert "stuck frames: 1 (published 1)" in output


def test_createsuperuser_noinput_works_with_the_custom_user(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-superuser-password")

    call_command(
        "createsuperuser", "--noinput", "--username", "boss", "--email", "boss@example.org", stdout=io.StringIO()
    )

    boss = User.objects.get(username="boss")
    assert boss.is_superuser and boss.check_password("a-long-superuser-password")


def test_the_lost_token_command_rotates_the_camera_key(device):
    """README: "Lost the token? manage.py neopain_token --rotate camera-bed-1" (drf_create_token -r too)."""
    first = run("neopain_token", device.user.username).split()[-1]
    second = run("neopain_token", "--rotate", device.user.username).split()[-1]
    third = run("drf_create_token", "-r", device.user.username).split()[-1]

    assert services.api_token_authenticate(key=third)[0] == device.user
    for old in (first, second):
        with pytest.raises(services.TokenRefused, match="replaced by a newer token"):
            services.api_token_authenticate(key=old)
    listing = run("neopain_token", "--list", device.user.username)
    assert listing.count("revoked") == 2 and listing.count("active") == 1 and third not in listing
    assert {"token.created", "token.rotated"} <= set(
        AuditEvent.objects.filter(object_type="triage.ApiToken").values_list("action", flat=True)
    )
