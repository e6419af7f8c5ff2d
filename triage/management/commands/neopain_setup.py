"""First-run setup for a laptop or a fresh deployment (idempotent; run after ``migrate``).

Creates the demo unit "NICU Demo" with a unit admin, a nurse, a bedside device (with an expiring
API token) and a demo neonate, then builds, registers and activates the bootstrap model. Passwords
come from NEOPAIN_ADMIN_PASSWORD / NEOPAIN_NURSE_PASSWORD or are generated and printed once;
nothing is written to disk in plain text. A second run changes nothing and prints no secrets.
"""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from triage import selectors, services
from triage.models import Device, ModelVersion, Neonate, Role, Unit, User

DEMO_UNIT_NAME = "NICU Demo"
DEMO_UNIT_CODE = "demo"
DEMO_NEONATE_MRN = "DEMO-0001"
DEVICE_USERNAME = "camera-bed-1"


class Command(BaseCommand):
    help = "Create the demo unit, its users and device, and activate the bootstrap model (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--skip-model", action="store_true", help="Do not build/register the bootstrap model.")
        parser.add_argument("--url", default="", help="Base URL to print (default http://127.0.0.1:$PORT/).")

    def handle(self, *args, **options):
        url = options["url"] or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/"
        secrets_out: list[str] = []
        with transaction.atomic():
            unit, unit_created = Unit.objects.get_or_create(code=DEMO_UNIT_CODE, defaults={"name": DEMO_UNIT_NAME})
            services.unit_settings_get(unit=unit)
            admin_line = self._person(unit, "unitadmin", Role.UNIT_ADMIN, "NEOPAIN_ADMIN_PASSWORD", "Unit admin")
            nurse_line = self._person(unit, "nurse", Role.NURSE, "NEOPAIN_NURSE_PASSWORD", "Nurse")
            token_line = self._device(unit)
            neonate, _ = Neonate.objects.get_or_create(unit=unit, mrn=DEMO_NEONATE_MRN, defaults={"bed": "1"})
            if unit_created:
                services.audit_record(action="setup.demo_created", unit=unit, obj=unit, actor_username="neopain_setup")
        secrets_out += [admin_line, nurse_line, token_line]

        model_line = "model: skipped (--skip-model)"
        if not options["skip_model"]:
            model_line = self._bootstrap_model()

        self.stdout.write(self.style.SUCCESS(f"NeoPain is set up. Unit: {unit.name} (code {unit.code})."))
        for line in secrets_out:
            self.stdout.write(f"  {line}")
        self.stdout.write(f"  demo neonate MRN: {neonate.mrn} (bed {neonate.bed})")
        self.stdout.write(f"  {model_line}")
        self.stdout.write(f"  open: {url}")
        self.stdout.write(
            "  upload a frame:\n"
            f'    curl -H "Authorization: Token $NEOPAIN_DEVICE_TOKEN" -F neonate={neonate.mrn} '
            f"-F image=@face.jpg {url.rstrip('/')}/api/v1/frames/"
        )

    def _person(self, unit: Unit, username: str, role: str, password_env: str, title: str) -> str:
        user = User.objects.filter(username=username).first()
        if user is not None:
            return f"{title}: {username} (exists; password unchanged)"
        password = os.environ.get(password_env, "").strip()
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        user = User(username=username, role=role, unit=unit, first_name=title.split()[0])
        try:
            # The same AUTH_PASSWORD_VALIDATORS as the change-password page (NEOPAIN_ADMIN_PASSWORD=a is refused).
            validate_password(password, user=user)
        except ValidationError as exc:
            raise CommandError(f"{password_env} is too weak: {' '.join(exc.messages)}") from None
        user.set_password(password)
        user.save()
        services.audit_record(
            action="user.created",
            unit=unit,
            obj=user,
            actor_username="neopain_setup",
            after={"username": username, "role": role},
        )
        if generated:
            return f"{title}: {username} / {password}   <- generated; shown only now, write it down"
        return f"{title}: {username} (password from {password_env})"

    def _device(self, unit: Unit) -> str:
        user = User.objects.filter(username=DEVICE_USERNAME).first()
        if user is not None:
            return (
                f"Device token for {DEVICE_USERNAME}: exists (not shown again; rotate with "
                f"`manage.py neopain_token --rotate {DEVICE_USERNAME}`)"
            )
        user = User(username=DEVICE_USERNAME, role=Role.DEVICE, unit=unit, first_name="Bed 1 camera")
        user.set_unusable_password()
        user.save()
        Device.objects.create(name="Bed 1 camera", unit=unit, user=user)
        services.audit_record(action="device.created", unit=unit, obj=user.device, actor_username="neopain_setup")
        issued = services.api_token_create(user=user, actor_username="neopain_setup")
        return (
            f"Device token for {DEVICE_USERNAME}: {issued.key}   <- shown only now, expires "
            f"{issued.token.expires_at:%Y-%m-%d} (export NEOPAIN_DEVICE_TOKEN={issued.key})"
        )

    def _bootstrap_model(self) -> str:
        active = selectors.active_model_for_unit(unit=None)
        if active is not None:
            note = " (bootstrap: NOT a trained pain model)" if active.is_bootstrap else ""
            return f"active model: {active.label}{note}"
        try:
            from inference.bootstrap import build_bootstrap_bundle

            path = settings.MODELS_DIR / "bootstrap-fer-proxy.pt"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                build_bootstrap_bundle(path)
        except Exception as exc:
            raise CommandError(f"Could not build the bootstrap model: {type(exc).__name__}: {exc}") from exc
        model = services.model_version_register(bundle_path=path, status=ModelVersion.Status.ACTIVE)
        return f"active model: {model.label} (bootstrap: NOT a trained pain model; sha256 {model.sha256[:12]}...)"
