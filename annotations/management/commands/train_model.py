"""Train a model on a dataset folder or on the unit's nurse decisions, write a bundle and register
it as a candidate model version: the facial-movement model by default, PainNet with ``--features cnn``
(or any PainNet option, e.g. ``--recipe paper`` for the paper's)."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from annotations.management.commands._options import (
    FACE_FEATURES,
    TrainingCommand,
    add_label_source_option,
    add_unit_option,
    fmt,
    guarantee_line,
    json_line,
    label_sources_line,
)
from triage.management.commands._options import unit_from_option


class Command(TrainingCommand):
    help = (
        "Train a model (default: the facial-movement model; PainNet: --features cnn, the paper's: "
        "--recipe paper) on --dataset DIR (<subject>/<pain|nonpain>/*.png or a CSV manifest) or "
        "--from-assessments (the unit's nurse NIPS decisions); write a bundle; register a candidate."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--dataset", help="Dataset folder or CSV manifest (path, subject, label).")
        source.add_argument("--from-assessments", action="store_true", help="Train on nurse-labelled frames.")
        add_unit_option(parser, help="Unit code: its nurse labels, and the model serves only it.")
        add_label_source_option(parser)
        parser.add_argument(
            "--out", default=None, help="Bundle path (default $NEOPAIN_DATA_DIR/models/<name>-<time>.pt)."
        )
        parser.add_argument(
            "--name",
            default=None,
            help="Model name in the bundle (default painnet-<unit|backbone>; a face model: face_actions-<unit|all> "
            "or face_motion-<unit|all>).",
        )
        parser.add_argument("--no-register", action="store_true", help="Write the bundle only.")
        parser.add_argument(
            "--features",
            choices=["cnn", "actions", "motion"],
            default=None,
            help="motion (default): the optical flow from each neonate's resting face (its baseline) to the frame; "
            "actions: face-mesh facial actions relative to each neonate's baseline; both L2 logistic regression "
            "with --baseline neonate (their default). cnn: PainNet (the recipe), implied when a PainNet option "
            "(--recipe, --backbone, --finetune, --epochs, --lr, ...) is given without --features.",
        )
        super().add_arguments(parser)

    def handle(self, *args, **options):
        from annotations.model_metrics import DEFAULT_ALPHA, unit_alpha
        from annotations.training_sets import audit_flags, training_set_export
        from inference import training as tr
        from triage.services import model_version_register

        choice = self.model_choice(options)
        face_model = options["features"] in FACE_FEATURES
        options["baseline"] = self.baseline_modes(options, options["features"])[0]
        if face_model and options["baseline"] != "neonate":
            raise CommandError(
                f"--features {options['features']} judges a face against the baby's own: it needs --baseline neonate "
                "(its default); --baseline none is for PainNet (--features cnn)"
            )
        self.stdout.write(choice)
        unit = unit_from_option(code=options["unit"])
        config = self.train_config(options, options["backbone"])
        alpha = options["alpha"] or (unit_alpha(unit) if unit else DEFAULT_ALPHA)
        progress = self.show_progress(options)
        start = time.perf_counter()
        runtime = self.runtime_configure(options)
        with tempfile.TemporaryDirectory(prefix="neopain-train-") as tmp:
            if options["from_assessments"]:
                export = training_set_export(unit=unit, out_dir=tmp, source=options["label_source"])
                self.stdout.write(
                    f"Exported {export['n_images']} nurse-labelled crops of {export['n_subjects']} neonates "
                    f"({export['n_pain']} pain, labels: {export['label_source']}); excluded {export['excluded'] or 'none'}"
                )
                self.stdout.write(label_sources_line(export))
                if export["n_images"] == 0:
                    raise CommandError("No usable nurse-labelled frames to train on.")
                source, source_name = (
                    tmp,
                    f"nurse assessments ({unit.code if unit else 'all units'}, labels {export['label_source']})",
                )
            else:
                source, source_name = options["dataset"], str(options["dataset"])
            info, crops = self.dataset_crops(source, options)
            dataset = {k: v for k, v in tr.dataset_summary(crops.images).items() if k != "per_subject"}
            dataset.update({"source": source_name, "skipped_no_face": len(crops.skipped)})
            if info.get("excluded"):
                dataset["excluded"] = info["excluded"]
            for key in ("label_source", "label_sources", "methods"):  # where the nurse labels came from
                if key in info:
                    dataset[key] = info[key]
            model_line = (
                {
                    "actions": "the facial-action model (face mesh, L2 logistic regression",
                    "motion": "the facial-movement model (optical flow from the resting face, L2 logistic regression",
                }[options["features"]]
                if face_model
                else f"{config.backbone} (recipe {config.recipe}, fine-tune {config.finetune}, lr {config.lr:g}, "
                f"backbone lr {config.backbone_lr or config.lr:g}, up to {config.epochs} epochs"
            )
            self.stdout.write(
                f"Training {model_line}, seed {config.seed}) on {dataset['n_images']} images of {dataset['n_subjects']} subjects "
                f"({dataset['n_pain']} pain); {crops.cache_hits} crops from cache, {len(crops.skipped)} skipped"
            )
            if config.baseline == "neonate":
                self.stdout.write(
                    f"Baseline per neonate: each frame judged against the median embedding of its subject's own "
                    f"frames (labels never read), the guarantee's frames too; served once a neonate has "
                    f"{config.baseline_min_frames} frames (window {config.baseline_window}), before that a cold "
                    "start routed to a nurse"
                )
            audit = audit_flags(tmp, crops.images) if options["from_assessments"] else None
            try:
                if face_model:
                    from inference.face_actions import FaceMeshUnavailable
                    from inference.training.actions_model import train_actions_model

                    try:
                        trained = train_actions_model(
                            crops, config=config, alpha=alpha, dataset=dataset, kind=options["features"], audit=audit
                        )
                    except FaceMeshUnavailable as exc:
                        raise CommandError(str(exc)) from exc
                else:
                    trained = tr.train_model(
                        crops, config=config, alpha=alpha, progress=progress, dataset=dataset, audit=audit
                    )
            except (tr.DatasetError, FileNotFoundError) as exc:
                raise CommandError(str(exc)) from exc
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        if face_model:
            from inference.training.actions_model import FACE_MODELS, face_model_description

            architecture = FACE_MODELS[options["features"]][0]
            default_name = f"{architecture}-{unit.code if unit else 'all'}"
            description = face_model_description(options["features"], dataset)
        else:
            default_name, description = f"painnet-{unit.code if unit else config.backbone}", ""
        name = options["name"] or default_name
        out = Path(options["out"]) if options["out"] else Path(settings.MODELS_DIR) / f"{name}-{stamp}.pt"
        sha256 = tr.bundle_write(trained, out, name=name, version=stamp, description=description)
        m = trained.metrics
        w = self.stdout.write
        w(f"Bundle: {out.resolve()} (sha256 {sha256})")
        if m.get("l2") is not None:
            w(f"L2 {m['l2']:g} chosen by leave-one-subject-out over the training subjects, {m['train_seconds']:.0f} s")
        else:
            w(
                f"Stopped at epoch {m['epochs_run']} (best {m['best_epoch']}), {m['train_seconds']:.0f} s training, "
                f"{time.perf_counter() - start:.0f} s in all"
            )
        if "accuracy" in m:
            w(
                f"Validation subjects {', '.join(m['validation_subjects'])}: accuracy {fmt(m['accuracy'])}, AUC {fmt(m['auc'])}, "
                f"sensitivity {fmt(m['sensitivity'])}, specificity {fmt(m['specificity'])}, AURC {fmt(m['aurc'], 4)}"
            )
            if m.get("temperature_fitted") is None:
                w(
                    f"Calibration: ECE {fmt(m['ece'])}; served uncalibrated (T = 1): fewer than "
                    f"{tr.MIN_CALIBRATION_IMAGES} validation images or one class"
                )
            else:
                w(
                    f"Calibration: ECE {fmt(m['ece'])} -> {fmt(m['ece_temperature_scaled'])} at served temperature "
                    f"{m['temperature']:.2f} (NLL optimum {m['temperature_fitted']:.2f}"
                    f"{', CLIPPED to the allowed range' if m.get('temperature_clipped') else ''}); "
                    f"fitted on {m['temperature_fitted_on']}"
                )
            for row in m["thresholds"]:
                if row["threshold"] in (0.55, 0.6):
                    w(
                        f"  threshold {row['threshold']:.2f}: framework accuracy {row['accuracy']:.3f}, "
                        f"{row['manual']}/{row['n']} to a nurse"
                    )
            w("  " + guarantee_line(m["guarantee"]))
            roles = m["validation_roles"]
            w(
                f"  Validation subjects' uses: early stopping {', '.join(roles['early_stopping'])}; temperature "
                f"{', '.join(roles['temperature'])}; guarantee {m['calibration_source']['note']}"
                + (f" ({roles['reuse']})" if roles["reuse"] else "")
            )
        result = {
            "bundle": str(out.resolve()),
            "sha256": sha256,
            "metrics": m,
            "seconds_total": round(time.perf_counter() - start, 1),
            **runtime,
        }
        if not options["no_register"]:
            try:
                version = model_version_register(bundle_path=out, unit=unit, metrics=m)
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            result["model_version_id"] = version.pk
            w(
                f"Registered candidate model version {version.pk} ({version.label}); compare with "
                f"`manage.py compare_models --candidate {version.pk}`, activate with `manage.py activate_model {version.pk}`"
            )
        if options["json"]:
            w(json_line({**result, "metrics": {k: v for k, v in m.items() if k != "history"}}))
