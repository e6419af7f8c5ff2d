"""Activate a registered model version by id (workers switch on their next batch)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from triage import services
from triage.models import ModelVersion


class Command(BaseCommand):
    help = "Make model version ID the active one of its kind and unit (audited)."

    def add_arguments(self, parser):
        parser.add_argument("id", type=int)

    def handle(self, *args, **options):
        model = ModelVersion.objects.filter(pk=options["id"]).first()
        if model is None:
            raise CommandError(f"No model version {options['id']}; see `manage.py register_model`.")
        try:
            model = services.model_version_activate(model_version=model, actor=None)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"{model.pk}\t{model.label}\t{model.kind}\tactive\tsha256 {model.sha256}")
