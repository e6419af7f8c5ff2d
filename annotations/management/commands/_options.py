"""The option set of the training and evaluation commands (a leading underscore: Django lists no command for it).

``train_model`` and ``evaluate_model`` are :class:`TrainingCommand` subclasses: they add their
own options, then the training options, and read them through its methods. ``compare_models``
and ``train_face_detector`` take the flags they share with them (``--unit``, ``--cache``,
``--seed``, ``--json``) from the ``add_*_option`` functions, so a flag means one thing everywhere.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

# Before torch loads (inference.painnet imports it), as the benchmarks do (scripts/benchkit.py):
# OpenMP threads then wait passively between parallel regions instead of spinning, so a run
# under a neighbour's load does not fight it for the cores (a head-only run had not finished
# after 5 min spinning; it took 41 s passive with one thread). An operator's value is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from inference.painnet import BACKBONES
from inference.training.config import RECIPES


def add_unit_option(parser, *, help: str) -> None:
    """``--unit CODE`` (resolved with ``triage.management.commands._options.unit_from_option``)."""
    parser.add_argument("--unit", default=None, help=help)


def add_label_source_option(parser) -> None:
    """``--label-source``: which nurse judgement becomes the training label (issue 13)."""
    from annotations.observations import LABEL_SOURCE_HELP, LabelSource

    parser.add_argument(
        "--label-source",
        choices=[s.value for s in LabelSource],
        default=LabelSource.NIPS_RULE.value,
        help=f"Labels from nurse assessments: {LABEL_SOURCE_HELP}.",
    )


def label_sources_line(summary: dict[str, Any]) -> str:
    """``Labels by source: nips_rule 12 (used), face_item 30, nurse_call 8; observed: cot 9, ...``."""
    counts = ", ".join(
        f"{name} {n}{' (used)' if name == summary['label_source'] else ''}"
        for name, n in summary["label_sources"].items()
    )
    methods = ", ".join(f"{m or 'none'} {n}" for m, n in sorted(summary.get("methods", {}).items())) or "none"
    return f"Labels by source: {counts}; labels written by observation method: {methods}"


def add_cache_option(parser, *, help: str | None = None) -> None:
    """``--cache DIR``: the face-crop cache folder."""
    parser.add_argument("--cache", default=None, help=help)


def add_seed_option(parser) -> None:
    parser.add_argument("--seed", type=int, default=0)


def add_json_option(parser, *, help: str | None = None) -> None:
    """``--json``: the command's result as one line of JSON at the end (:func:`json_line`)."""
    parser.add_argument("--json", action="store_true", help=help)


#: What ``--features`` trains when not given: the facial-movement model, which learned best in
#: LOSOCV on every planted set measured (docs/learning.md, "Measured figures"; issue 14).
DEFAULT_FEATURES = "motion"
#: The face models: each frame judged against its neonate's resting face (``--baseline neonate``).
FACE_FEATURES = ("actions", "motion")
DEFAULT_BACKBONE = "mobilenet_v2"
#: PainNet's options (``options`` keys). Given, they imply ``--features cnn`` when ``--features`` is not;
#: beside a ``--features`` they do not apply to, a CommandError. The backbone's two also pick the frozen
#: CNN of ``evaluate_model --features embedding|combined``.
PAINNET_OPTIONS = (
    "recipe",
    "backbone",
    "backbone_weights",
    "finetune",
    "freeze_backbone",
    "epochs",
    "lr",
    "backbone_lr",
    "batch_size",
    "patience",
    "augment_views",
)
_BACKBONE_FEATURES = {"cnn", "embedding", "combined"}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


class TrainingCommand(BaseCommand):
    """A command that trains a model on a dataset (the facial-movement model unless ``--features`` or a
    PainNet option says otherwise: :meth:`model_choice`): the training options and how they are read."""

    #: ``--backbone`` takes several names, evaluated side by side.
    several_backbones = False

    def add_arguments(self, parser):
        """The training options; a subclass adds its own first, then calls this."""
        if self.several_backbones:
            parser.add_argument(
                "--backbone",
                nargs="+",
                default=None,
                choices=sorted(BACKBONES),
                help="One or more backbones, evaluated side by side (default mobilenet_v2). PainNet's (implies "
                "--features cnn); also the frozen CNN of embedding/combined.",
            )
        else:
            parser.add_argument(
                "--backbone",
                default=None,
                choices=sorted(BACKBONES),
                help="PainNet's backbone (default mobilenet_v2; implies --features cnn).",
            )
        parser.add_argument(
            "--backbone-weights", default=None, help="Weights file for resnet50 (NEOPAIN_RESNET50_WEIGHTS)."
        )
        parser.add_argument(
            "--recipe",
            choices=sorted(RECIPES),
            default=None,
            help="PainNet's training recipe (implies --features cnn; --recipe paper: the paper's PainNet). "
            "default: per-group rates, warm-up + cosine, bedside augmentation, early stopping on validation "
            "AUC, flip averaging (learns from few frames); paper: Zhao et al.'s protocol (lr 1e-5, rotation + flip, "
            "early stopping on validation loss). The options below override the recipe's values.",
        )
        parser.add_argument(
            "--epochs",
            type=int,
            default=None,
            help="Most epochs; early stopping usually ends sooner (default 30; paper 60).",
        )
        parser.add_argument(
            "--lr",
            type=float,
            default=None,
            help="Learning rate of the head (default 1e-3; paper: 1e-5 for everything).",
        )
        parser.add_argument(
            "--backbone-lr",
            type=float,
            default=None,
            help="Learning rate of the trainable backbone layers (default 1e-4; paper: same as --lr).",
        )
        parser.add_argument("--batch-size", type=int, default=None, help="PainNet's batch size (default 16).")
        parser.add_argument(
            "--patience", type=int, default=None, help="Early-stopping patience in epochs (default 8; paper 10)."
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="CPU threads for torch (default NEOPAIN_TORCH_THREADS, else every CPU this process may use).",
        )
        parser.add_argument(
            "--val-subjects",
            type=int,
            default=None,
            help="Training subjects held out for early stopping (default ~20%%, at least 1).",
        )
        add_seed_option(parser)
        parser.add_argument(
            "--finetune",
            choices=["last", "head", "all"],
            default=None,
            help="last: last backbone block + head (default); head: backbone frozen (the default with "
            "--baseline neonate); all: paper's full fine-tune.",
        )
        baseline_help = (
            "neonate: judge each frame against its subject's own resting face (median embedding of the "
            "subject's frames, no labels; a served model keeps one per neonate; the default of the face models "
            "motion and actions, which need it); none: each frame on its own (the default of cnn)"
        )
        if self.several_backbones:
            parser.add_argument(
                "--baseline",
                nargs="+",
                default=None,
                choices=["none", "neonate"],
                help=baseline_help + ". Several: side by side.",
            )
        else:
            parser.add_argument("--baseline", default=None, choices=["none", "neonate"], help=baseline_help)
        parser.add_argument(
            "--baseline-min-frames",
            type=int,
            default=None,
            help="Frames a neonate needs before its baseline is used (default 10); fewer: cold start.",
        )
        parser.add_argument("--freeze-backbone", action="store_true", help="Same as --finetune head (fastest).")
        parser.add_argument(
            "--augment-views",
            type=int,
            default=None,
            help="Augmented views precomputed per image for last/head (default 6; paper 4).",
        )
        parser.add_argument(
            "--alpha",
            type=float,
            default=None,
            help="Missed-pain target for the guaranteed threshold (default: the unit's, else 0.05).",
        )
        add_cache_option(parser, help="Face-crop cache folder (default $NEOPAIN_DATA_DIR/cache).")
        parser.add_argument(
            "--detector",
            default=None,
            choices=["retinaface", "yolo", "none"],
            help="Face detector for raw images (default retinaface; 'none' if images are face crops).",
        )
        parser.add_argument("--detector-weights", default=None, help="YOLO face weights for --detector yolo.")
        parser.add_argument(
            "--device", default=None, help="cpu or cuda (default: NEOPAIN_DEVICE, else CUDA when present)."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
        add_json_option(parser, help="End with one line of JSON.")

    def model_choice(self, options: dict[str, Any]) -> str:
        """Settle ``--features`` and PainNet's defaults in ``options``; return the line that says the choice.

        Not given, ``--features`` is ``cnn`` when a PainNet option is (``--recipe paper``: the paper's
        PainNet), else :data:`DEFAULT_FEATURES`; a PainNet option beside features it does not apply to is
        a CommandError. ``--baseline`` stays None when not given: the face models then use ``neonate``,
        the others ``none`` (:meth:`baseline_modes`).
        """
        # Given: not argparse's None (store_true's False); 0 (--augment-views 0) is given.
        given = [key for key in PAINNET_OPTIONS if options.get(key) is not None and options.get(key) is not False]
        features = options.get("features")
        if features is None:
            chosen = ["cnn"] if given else [DEFAULT_FEATURES]
            how = f"implied by {_flag(given[0])}" if given else "the default"
        else:
            chosen = [features] if isinstance(features, str) else list(dict.fromkeys(features))
            how = "as asked"
            for key in given:
                applies = _BACKBONE_FEATURES if key in ("backbone", "backbone_weights") else {"cnn"}
                if not applies & set(chosen):
                    raise CommandError(
                        f"{_flag(key)} is a PainNet option: it applies to --features cnn"
                        + (" (or the frozen CNN of embedding/combined)" if applies != {"cnn"} else "")
                        + f", not --features {' '.join(chosen)}. PainNet: --features cnn; the paper's: "
                        "--features cnn --recipe paper."
                    )
        options["features"] = chosen if self.several_backbones else chosen[0]
        if options.get("backbone") is None:
            options["backbone"] = [DEFAULT_BACKBONE] if self.several_backbones else DEFAULT_BACKBONE
        names = {
            "cnn": "PainNet",
            "motion": "the facial-movement model",
            "actions": "the facial-action model",
            "embedding": "a linear probe on the frozen CNN",
            "combined": "a linear probe on facial actions + the frozen CNN",
        }
        what = ", ".join(f"{names[f]} (--features {f})" for f in chosen)
        others = (
            "; PainNet: --features cnn, the paper's recipe: --features cnn --recipe paper"
            if "cnn" not in chosen
            else ""
        )
        return f"Model: {what}, {how}{others}"

    def baseline_modes(self, options: dict[str, Any], feature: str) -> list[str]:
        """The ``--baseline`` modes of ``feature``: as given, else ``neonate`` for a face model, ``none`` otherwise."""
        given = options["baseline"]
        if given is None:
            return ["neonate" if feature in FACE_FEATURES else "none"]
        return [given] if isinstance(given, str) else list(dict.fromkeys(given))

    def train_config(self, options: dict[str, Any], backbone: str, baseline: str | None = None):
        """The :class:`inference.training.TrainConfig` the options ask for; CommandError when invalid."""
        from inference.training import TrainConfig

        if baseline is None:
            given = options["baseline"] or "none"
            baseline = given if isinstance(given, str) else given[0]
        finetune = "head" if options["freeze_backbone"] else options["finetune"]
        if finetune is None and baseline == "neonate":
            finetune = "head"
        try:
            return TrainConfig.for_recipe(
                options["recipe"] or "default",
                backbone=backbone,
                backbone_weights=options["backbone_weights"],
                finetune=finetune,
                baseline=baseline,
                baseline_min_frames=options["baseline_min_frames"],
                epochs=options["epochs"],
                lr=options["lr"],
                backbone_lr=options["backbone_lr"],
                batch_size=options["batch_size"],
                patience=options["patience"],
                val_subjects=options["val_subjects"],
                augment_views=options["augment_views"],
                seed=options["seed"],
                device=options["device"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def runtime_configure(self, options: dict[str, Any]) -> dict[str, Any]:
        """Set torch's thread count (``--threads``, else NEOPAIN_TORCH_THREADS, else the CPUs
        available), print it with the OpenMP wait policy, and return both for the JSON."""
        from inference.runtime import inference_threads, threads_set

        if options["threads"] is not None and options["threads"] < 1:
            raise CommandError("--threads must be at least 1")
        try:
            threads = threads_set(options["threads"] or inference_threads())
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        policy = os.environ.get("OMP_WAIT_POLICY", "")
        self.stdout.write(f"Threads: {threads} (OMP_WAIT_POLICY={policy or 'unset'})")
        return {"threads": threads, "omp_wait_policy": policy or None}

    def show_progress(self, options: dict[str, Any]) -> bool:
        return not options["no_progress"] and options.get("verbosity", 1) > 0

    def dataset_crops(self, source: str | os.PathLike[str], options: dict[str, Any]):
        """``(dataset.json info, face crops)`` of a dataset folder or manifest; CommandError if unusable."""
        from inference import training as tr

        try:
            images = tr.dataset_read(source)
        except tr.DatasetError as exc:
            raise CommandError(str(exc)) from exc
        info = tr.dataset_info(source)
        settings = tr.dataset_crop_settings(
            info, detector=options["detector"], detector_weights=options["detector_weights"]
        )
        crops = tr.face_crops(
            images, settings=settings, cache_dir=options["cache"], progress=self.show_progress(options)
        )
        return info, crops


def json_line(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def guarantee_line(g: dict[str, Any]) -> str:
    """One line on the conformal threshold: the loss named, the rate among automatic verdicts beside it."""
    if g["all_to_nurse"]:
        reason = g.get("reason") or (
            f"none below 1.0 meets missed pain <= {g['alpha']} with n={g['n_calibration']} calibration frames "
            f"(CRC needs n >= {math.ceil(1 / g['alpha'] - 1)} for this alpha, and few misses)"
        )
        return f"guaranteed threshold: none: {reason}; every case to a nurse"
    units = (
        f"{g['n_subjects']} babies, {g['n_calibration']} frames" if g.get("per_subject") else f"n={g['n_calibration']}"
    )
    return (
        f"guaranteed threshold {g['threshold']:.3f}: expected missed pain among ALL frames <= {g['alpha']} "
        f"(conformal risk control, {units}); {g['expected_manual_share']:.1%} of cases to a nurse; missed pain "
        f"among automatic verdicts on these frames {g['empirical_missed_pain_rate_auto']:.1%} (not bounded by it)"
    )
