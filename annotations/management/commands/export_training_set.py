"""Export nurse-labelled face crops in the training dataset layout."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from annotations.management.commands._options import add_label_source_option, add_unit_option, label_sources_line
from triage.management.commands._options import unit_from_option


class Command(BaseCommand):
    help = (
        "Write OUT/<subject>/<pain|nonpain>/*.png (+ manifest.csv, dataset.json) from decided cases: label from "
        "--label-source (default nips_rule: the unit's NIPS rule on complete observations; face-only reviews never "
        "give one); unable-to-assess and disagreeing double scores left out; subject = a pseudonymous neonate id."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True)
        add_unit_option(parser, help="Unit code (default: every unit).")
        add_label_source_option(parser)

    def handle(self, *args, **options):
        from annotations.training_sets import training_set_export

        unit = unit_from_option(code=options["unit"])
        summary = training_set_export(unit=unit, out_dir=options["out"], source=options["label_source"])
        excluded = ", ".join(f"{k} {v}" for k, v in sorted(summary["excluded"].items())) or "none"
        self.stdout.write(
            f"Wrote {summary['n_images']} crops ({summary['n_pain']} pain) of {summary['n_subjects']} neonates to "
            f"{options['out']}; excluded: {excluded}"
        )
        self.stdout.write(label_sources_line(summary))
