"""Candidate vs active model on the same held-out nurse-labelled data."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotations.management.commands._options import (
    add_cache_option,
    add_json_option,
    add_label_source_option,
    add_unit_option,
    fmt,
    json_line,
    label_sources_line,
)
from triage.management.commands._options import unit_from_option


class Command(BaseCommand):
    help = (
        "Score --candidate and the active model (or --active) on the same nurse-labelled images that neither "
        "trained on: the unit's exported labels, or --dataset DIR."
    )

    def add_arguments(self, parser):
        parser.add_argument("--candidate", type=int, required=True)
        parser.add_argument("--active", type=int, default=None, help="Default: the unit's active model.")
        parser.add_argument("--dataset", default=None, help="Dataset folder or manifest (default: nurse labels).")
        add_unit_option(parser, help="Unit code (default: the candidate's unit).")
        add_cache_option(parser)
        add_label_source_option(parser)
        add_json_option(parser)
        parser.add_argument("--store", action="store_true", help="Keep the comparison in the candidate's metrics.")

    def handle(self, *args, **options):
        from annotations.model_comparison import model_comparison_store, models_compare
        from triage.models import ModelVersion

        candidate = ModelVersion.objects.filter(pk=options["candidate"]).first()
        if candidate is None:
            raise CommandError(f"No model version {options['candidate']}.")
        active = None
        if options["active"] is not None:
            active = ModelVersion.objects.filter(pk=options["active"]).first()
            if active is None:
                raise CommandError(f"No model version {options['active']}.")
        unit = unit_from_option(code=options["unit"])
        try:
            result = models_compare(
                candidate=candidate,
                active=active,
                dataset=options["dataset"],
                unit=unit,
                cache_dir=options["cache"],
                label_source=options["label_source"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        w = self.stdout.write
        if "label_sources" in result["source"]:
            w(label_sources_line(result["source"]))
        w(
            f"Held-out labelled images: {result['n']} (left out {result['n_excluded_training_images']} that a "
            f"model trained on, {result['n_skipped_no_face']} without a face); unit threshold "
            f"{result['unit_threshold']:.2f}, missed-pain target {result['alpha']}"
        )
        models = result["models"]
        names = list(models)
        w(f"{'':<26}" + "".join(f"{models[n]['label'][:24] + ' (' + n + ')':>40}" for n in names))
        rows = [
            ("accuracy", lambda m: fmt(m.get("accuracy"))),
            ("AUC", lambda m: fmt(m.get("auc"))),
            ("sensitivity", lambda m: fmt(m.get("sensitivity"))),
            ("specificity", lambda m: fmt(m.get("specificity"))),
            ("kappa vs nurse", lambda m: fmt(m.get("kappa_vs_nurse"))),
            ("AURC", lambda m: fmt(m.get("aurc"), 4)),
            ("ECE", lambda m: fmt(m.get("ece"))),
            ("at unit threshold: acc", lambda m: fmt((m.get("at_unit_threshold") or {}).get("accuracy"))),
            ("at unit threshold: nurse", lambda m: fmt((m.get("at_unit_threshold") or {}).get("manual"))),
            ("guaranteed threshold", lambda m: fmt((m.get("guarantee") or {}).get("threshold"))),
            ("  share to nurse", lambda m: fmt((m.get("guarantee") or {}).get("expected_manual_share"))),
        ]
        for label, getter in rows:
            w(f"{label:<26}" + "".join(f"{getter(models[n]):>40}" for n in names))
        if "mcnemar" in result:
            mc = result["mcnemar"]
            w(
                f"Paired verdicts: candidate right/active wrong {mc['candidate_right_active_wrong']}, the reverse "
                f"{mc['candidate_wrong_active_right']}; exact McNemar p = {mc['p_value']:.3g}: {result['verdict']}"
            )
        if options["store"]:
            model_comparison_store(candidate=candidate, comparison=result)
            w(f"Stored in the metrics of model version {candidate.pk}.")
        w(f"Activate with `manage.py activate_model {candidate.pk}` (audited; workers switch on their next batch).")
        if options["json"]:
            w(json_line(result))
