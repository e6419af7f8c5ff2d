"""LOSOCV of one or more backbones on a labelled dataset (the paper's Table 1 experiment),
or the threshold analysis of a registered model on a labelled held-out set."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from annotations.management.commands._options import TrainingCommand, fmt, guarantee_line, json_line

REPORTED_THRESHOLDS = (0.5, 0.55, 0.6, 0.7, 0.8, 0.9)


class Command(TrainingCommand):
    several_backbones = True
    help = (
        "Evaluate on a labelled dataset (DIR/<subject>/<pain|nonpain>/*.png or a CSV manifest). "
        "--losocv: leave-one-subject-out cross-validation per --features (default motion, the facial-movement "
        "model; PainNet: --features cnn, per --backbone side by side; the paper's: --recipe paper). "
        "--model ID: threshold analysis of a registered model on the dataset (--store saves it in its metrics)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="Dataset folder or CSV manifest (path, subject, label).")
        parser.add_argument("--losocv", action="store_true", help="Leave-one-subject-out cross-validation.")
        parser.add_argument("--model", type=int, default=None, help="Evaluate registered ModelVersion ID instead.")
        parser.add_argument("--store", action="store_true", help="With --model: store the analysis in its metrics.")
        parser.add_argument(
            "--features",
            nargs="+",
            default=None,
            choices=["cnn", "actions", "embedding", "combined", "motion"],
            help="With --losocv, side by side: motion (default: the optical flow from each baby's resting face; "
            "always against the neonate baseline); a linear probe (L2 chosen by nested LOSO) on actions (face-mesh "
            "geometry; --baseline neonate unless given), embedding (frozen CNN) or combined (both); or cnn (PainNet, "
            "the recipe), implied when a PainNet option (--recipe, --backbone, --finetune, --epochs, ...) is given "
            "without --features.",
        )
        parser.add_argument(
            "--plot", default=None, help="Save the threshold/risk-coverage/reliability figure (.png or .svg)."
        )
        super().add_arguments(parser)

    def handle(self, *args, **options):
        from inference import training as tr

        if not options["losocv"] and options["model"] is None:
            raise CommandError("Say what to evaluate: --losocv (train and test per subject) or --model ID.")
        if options["model"] is None:
            self.stdout.write(self.model_choice(options))
        start = time.perf_counter()
        runtime = self.runtime_configure(options)
        _, crops = self.dataset_crops(options["dataset"], options)
        summary = tr.dataset_summary(crops.images)
        self.stdout.write(
            f"Dataset {options['dataset']}: {summary['n_images']} images, {summary['n_subjects']} subjects, "
            f"{summary['n_pain']} pain / {summary['n_nonpain']} nonpain; face crops: {crops.cache_hits} from cache, "
            f"{len(crops.skipped)} skipped (no face or unreadable), {time.perf_counter() - start:.1f} s"
        )
        for path, reason in crops.skipped[:10]:
            self.stdout.write(f"  skipped {path}: {reason}")
        if options["model"] is not None:
            return self._evaluate_registered(crops, summary, options)
        return self._losocv(crops, summary, options, runtime=runtime, start=start)

    # ------------------------------------------------------------------ LOSOCV

    def _losocv(self, crops, summary, options, *, runtime, start):
        from inference import thresholds as th
        from inference import training as tr

        alpha = options["alpha"] or 0.05
        results: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        cnn_modes = self.baseline_modes(options, "cnn")
        runs = [(b, mode) for b in options["backbone"] for mode in cnn_modes] if "cnn" in options["features"] else []
        several_modes = len(cnn_modes) > 1
        banks: dict[tuple, Any] = {}  # frozen features shared by runs that differ only in the baseline
        linear = [f for f in dict.fromkeys(options["features"]) if f != "cnn"]
        if linear:
            results.update(self._linear_runs(crops, linear, options, alpha=alpha, errors=errors))
        for backbone, mode in runs:
            # With --baseline none neonate the two runs sit side by side as "<backbone>+<mode>".
            name = f"{backbone}+{mode}" if several_modes else backbone
            config = self.train_config(options, backbone, baseline=mode)
            key = (backbone, config.finetune, config.augment_views, config.augment, config.flip_tta, config.seed)
            try:
                if config.finetune != "all" and key not in banks:
                    banks[key] = tr.FeatureBank(crops.crops, config=config, progress=self.show_progress(options))
                result = tr.losocv(
                    crops, config=config, alpha=alpha, progress=self.show_progress(options), bank=banks.get(key)
                )
            except tr.DatasetError as exc:
                raise CommandError(str(exc)) from exc
            except (FileNotFoundError, RuntimeError) as exc:  # e.g. resnet50 without operator weights
                errors[name] = str(exc)
                self.stderr.write(f"{name}: skipped: {exc}")
                continue
            result["baseline"] = mode
            results[name] = result
        if not results:
            raise CommandError("no backbone could be evaluated: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
        names = list(results)
        self._print_side_by_side(results, names, summary)
        if options["plot"]:
            for name in names:
                path = Path(options["plot"])
                if len(names) > 1:
                    path = path.with_name(f"{path.stem}-{name}{path.suffix}")
                oof = results[name]["oof"]
                th.plot_threshold_analysis(
                    p_pain=oof["p_pain"],
                    labels=oof["labels"],
                    subjects=oof["subjects"],
                    path=path,
                    title=f"{name} LOSOCV ({summary['n_images']} images, {summary['n_subjects']} subjects)",
                )
                self.stdout.write(f"plot: {path}")
        best = max(names, key=lambda n: results[n]["balanced_accuracy_mean"])
        payload_per_backbone = {}
        for name in names:
            payload = dict(results[name])
            payload.pop("oof", None)
            payload_per_backbone[name] = payload
        out = {
            **payload_per_backbone[best],
            "best_backbone": best,
            "dataset": {k: v for k, v in summary.items() if k != "per_subject"},
            "backbones": payload_per_backbone,
            "skipped_backbones": errors,
            "seconds_total": round(time.perf_counter() - start, 1),
            **runtime,
        }
        self.stdout.write(
            f"Time: {out['seconds_total']:.0f} s in all ({runtime['threads']} threads, "
            f"OMP_WAIT_POLICY={runtime['omp_wait_policy']})"
        )
        if options["json"]:
            self.stdout.write(json_line(out))

    def _linear_runs(self, crops, features, options, *, alpha, errors):
        """LOSOCV of the linear probe per feature set and baseline mode (features computed once)."""
        from inference import training as tr
        from inference.face_actions import FaceMeshUnavailable, crops_action_features
        from inference.face_motion import crops_motion_embeddings
        from inference.training.linear import linear_losocv, motion_losocv

        progress = self.show_progress(options)
        columns: dict[str, Any] = {}
        try:
            if {"actions", "combined"} & set(features):
                started = time.perf_counter()
                columns["actions"] = crops_action_features(crops.crops)
                self.stdout.write(
                    f"Face-mesh actions of {len(crops.crops)} crops: {time.perf_counter() - started:.1f} s"
                )
            if "motion" in features:
                started = time.perf_counter()
                columns["motion"] = crops_motion_embeddings(crops.crops)
                self.stdout.write(
                    f"Aligned faces (face mesh) of {len(crops.crops)} crops: {time.perf_counter() - started:.1f} s"
                )
        except FaceMeshUnavailable as exc:
            for name in ("actions", "combined", "motion"):
                if name in features:
                    errors[name] = str(exc)
                    self.stderr.write(f"{name}: skipped: {exc}")
        if {"embedding", "combined"} & set(features):
            config = self.train_config(options, options["backbone"][0], baseline="none")
            config = tr.TrainConfig.for_recipe(
                config.recipe, backbone=config.backbone, finetune="head", augment_views=0, seed=config.seed
            )
            bank = tr.FeatureBank(crops.crops, config=config, progress=progress)
            view = bank.features[0]
            columns["embedding"] = ((view + bank.flipped) / 2 if bank.flipped is not None else view).numpy()
        if "actions" in columns and "embedding" in columns:
            import numpy as np

            columns["combined"] = np.concatenate([columns["actions"], columns["embedding"]], axis=1)
        results = {}
        for feature in features:
            if feature not in columns:
                continue
            if feature == "motion":  # the flow needs a resting face: against the neonate baseline only
                config = self.train_config(options, options["backbone"][0], baseline="neonate")
                result = motion_losocv(
                    columns[feature],
                    crops.labels,
                    crops.subjects,
                    policy=config.baseline_policy(),
                    alpha=alpha,
                    progress=progress,
                )
                result["baseline"] = "neonate"
                results[f"{feature}+neonate" if len(self.baseline_modes(options, feature)) > 1 else feature] = result
                continue
            modes = self.baseline_modes(options, feature)
            for mode in modes:
                name = f"{feature}+{mode}" if len(modes) > 1 else feature
                config = self.train_config(options, options["backbone"][0], baseline=mode)
                result = linear_losocv(
                    columns[feature],
                    crops.labels,
                    crops.subjects,
                    name=feature,
                    baseline=mode,
                    policy=config.baseline_policy(),
                    alpha=alpha,
                    progress=progress,
                )
                result["baseline"] = mode
                results[name] = result
        return results

    def _print_side_by_side(self, results, names, summary):
        width = max(12, *(len(n) + 2 for n in names))
        w = self.stdout.write
        w("")
        w("Leave-one-subject-out per held-out subject: accuracy, sensitivity, specificity")
        cell = max(width, 20)
        w(f"{'subject':<14}{'n':>5}{'pain':>6}" + "".join(f"{n:>{cell}}" for n in names))
        per_subject = summary["per_subject"]
        folds = {n: {f["subject"]: f for f in results[n]["folds"]} for n in names}
        for subject in sorted(per_subject):
            counts = per_subject[subject]
            row = f"{subject:<14}{counts['pain'] + counts['nonpain']:>5}{counts['pain']:>6}"
            for n in names:
                f = folds[n].get(subject, {})
                figures = " ".join(f"{fmt(f.get(k)):>5}" for k in ("accuracy", "sensitivity", "specificity"))
                row += f"{figures:>{cell}}"
            w(row)
        w("")
        lines = [
            ("accuracy mean", lambda r: f"{r['accuracy_mean']:.3f}"),
            ("accuracy sd", lambda r: f"{r['accuracy_sd']:.3f}"),
            ("accuracy pooled", lambda r: fmt(r["accuracy_pooled"])),
            ("balanced acc. mean", lambda r: fmt(r["balanced_accuracy_mean"])),
            ("balanced acc. sd", lambda r: fmt(r["balanced_accuracy_sd"])),
            ("AUC mean (per subject)", lambda r: f"{fmt(r['auc_mean'])} ({r['auc_subjects']})"),
            ("AUC pooled", lambda r: fmt(r["auc"])),
            ("sensitivity", lambda r: fmt(r["sensitivity"])),
            ("specificity", lambda r: fmt(r["specificity"])),
            ("AURC", lambda r: fmt(r["aurc"], 4)),
            ("ECE", lambda r: fmt(r["ece"])),
            ("ECE, temp.-scaled*", lambda r: fmt(r["ece_temperature_scaled"])),
            ("temperature", lambda r: fmt(r["temperature"], 2)),
            ("seconds", lambda r: f"{r['seconds']:.0f}"),
        ]
        w(f"{'summary':<25}" + "".join(f"{n:>{width}}" for n in names))
        for label, getter in lines:
            w(f"{label:<25}" + "".join(f"{getter(results[n]):>{width}}" for n in names))
        w("* each subject scaled by a temperature fitted on the other subjects' out-of-fold predictions")
        w("")
        w(
            "Framework accuracy (nurse-routed cases counted correct) / model alone on its automatic verdicts / "
            "cases to a nurse, pooled out-of-fold"
        )
        w(
            "majority-class baseline"
            + "".join(f"{fmt(results[n].get('majority_baseline')):>{width + 14}}" for n in names)
        )
        w(f"{'threshold':<11}" + "".join(f"{n:>{width + 14}}" for n in names))
        for t in REPORTED_THRESHOLDS:
            cells = []
            for n in names:
                row = next((r for r in results[n]["thresholds"] if abs(r["threshold"] - t) < 1e-9), None)
                cells.append(
                    "-"
                    if row is None
                    else f"{row['accuracy']:.3f} / {fmt(row['auto_accuracy'])} / {row['manual']:>3}/{row['n']}"
                )
            w(f"{t:<11.2f}" + "".join(f"{c:>{width + 14}}" for c in cells))
        w("")
        for n in names:
            w(f"{n}: {guarantee_line(results[n]['guarantee'])}")

    # ------------------------------------------------------------------ a registered model

    def _evaluate_registered(self, crops, summary, options):
        from inference import thresholds as th
        from inference.bundle import load_bundle
        from triage.models import ModelVersion

        version = ModelVersion.objects.filter(pk=options["model"], kind=ModelVersion.Kind.CLASSIFIER).first()
        if version is None:
            raise CommandError(f"No classifier model version {options['model']}.")
        loaded = load_bundle(version.bundle_path, expected_sha256=version.sha256)
        if not crops.crops:
            raise CommandError("No usable images in the dataset.")
        from annotations.model_comparison import training_hashes

        # An image that trained the weights says nothing about new babies: leave it out, and say so.
        trained_on = training_hashes(version)
        keep = [i for i, sha in enumerate(crops.file_sha256) if sha not in trained_on]
        n_excluded = len(crops.crops) - len(keep)
        if not keep:
            raise CommandError(f"All {n_excluded} images of the dataset trained this model: none is held out.")
        crops = crops.subset(keep)
        self.stdout.write(
            f"Left out {n_excluded} image(s) this model trained on; evaluating on {len(keep)} held-out images."
        )
        from inference.baseline import model_evaluate_p_pain

        # As served: a baseline model judges each subject's frames against that subject's baseline.
        p_pain, baseline_info = model_evaluate_p_pain(loaded, crops.crops, [image.subject for image in crops.images])
        labels = crops.labels
        from annotations.model_metrics import unit_alpha

        alpha = options["alpha"] or unit_alpha(version.unit)
        analysis = th.threshold_analysis(
            p_pain=p_pain, labels=labels, alpha=alpha, subjects=[image.subject for image in crops.images]
        )
        analysis["n_excluded_training_images"] = n_excluded
        analysis["baseline"] = baseline_info
        analysis["dataset"] = {k: v for k, v in summary.items() if k != "per_subject"}
        analysis["evaluation"] = f"held-out dataset {options['dataset']}"
        self.stdout.write(
            f"{version.label}: accuracy {fmt(analysis['accuracy'])}, AUC {fmt(analysis['auc'])}, sensitivity "
            f"{fmt(analysis['sensitivity'])}, specificity {fmt(analysis['specificity'])}, AURC {fmt(analysis['aurc'], 4)}, "
            f"ECE {fmt(analysis['ece'])} -> {fmt(analysis['ece_temperature_scaled'])} at T={analysis['temperature']:.2f} (in-sample)"
        )
        self.stdout.write(
            f"  majority-class baseline (always the commoner verdict): {fmt(analysis['majority_baseline'])}"
        )
        for row in analysis["thresholds"]:
            if row["threshold"] in REPORTED_THRESHOLDS:
                self.stdout.write(
                    f"  threshold {row['threshold']:.2f}: framework accuracy {row['accuracy']:.3f} (nurse cases counted "
                    f"right), model alone on its automatic verdicts {fmt(row['auto_accuracy'])}, "
                    f"{row['manual']}/{row['n']} to a nurse"
                )
        self.stdout.write("  " + guarantee_line(analysis["guarantee"]))
        if options["plot"]:
            th.plot_threshold_analysis(p_pain=p_pain, labels=labels, path=options["plot"], title=version.label)
            self.stdout.write(f"plot: {options['plot']}")
        if options["store"]:
            from annotations.model_metrics import model_metrics_store

            model_metrics_store(model_version=version, analysis=analysis)
            self.stdout.write(f"stored in the metrics of model version {version.pk}")
        if options["json"]:
            self.stdout.write(json_line(analysis))
