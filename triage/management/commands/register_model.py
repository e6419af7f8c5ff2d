"""Register a model bundle (or detector weights) by its sha256, optionally activating it."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from triage import services
from triage.management.commands._options import unit_from_option
from triage.models import ModelVersion


class Command(BaseCommand):
    help = "Register BUNDLE (idempotent on its sha256); --activate makes it the active model."

    def add_arguments(self, parser):
        parser.add_argument(
            "bundle", help="Path to a NeoPain model bundle (.pt) or, with --kind detector, YOLO weights."
        )
        parser.add_argument("--activate", action="store_true", help="Activate it (retires the current active model).")
        parser.add_argument("--unit", default=None, help="Unit code: the model serves only that unit.")
        parser.add_argument("--kind", default=ModelVersion.Kind.CLASSIFIER, choices=ModelVersion.Kind.values)
        parser.add_argument("--metrics", default=None, help="JSON file of evaluation metrics to store with it.")

    def handle(self, *args, **options):
        unit = unit_from_option(code=options["unit"])
        metrics = None
        if options["metrics"]:
            try:
                metrics = json.loads(Path(options["metrics"]).read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read metrics from {options['metrics']}: {exc}") from exc
        try:
            model = services.model_version_register(
                bundle_path=options["bundle"],
                kind=options["kind"],
                unit=unit,
                metrics=metrics,
                status=ModelVersion.Status.ACTIVE if options["activate"] else ModelVersion.Status.CANDIDATE,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(
            f"{model.pk}\t{model.label}\t{model.kind}\t{model.status}\tsha256 {model.sha256}\t"
            f"unit {model.unit.code if model.unit else '(all)'}"
        )
