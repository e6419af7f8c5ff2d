"""Options shared by the training commands (a leading underscore: Django lists no command for it)."""

from __future__ import annotations

import json
import math
from typing import Any

from django.core.management.base import CommandError

from inference.painnet import BACKBONES


def add_training_options(parser, *, several_backbones: bool = False) -> None:
    if several_backbones:
        parser.add_argument(
            "--backbone",
            nargs="+",
            default=["mobilenet_v2"],
            choices=sorted(BACKBONES),
            help="One or more backbones, evaluated side by side (default mobilenet_v2).",
        )
    else:
        parser.add_argument("--backbone", default="mobilenet_v2", choices=sorted(BACKBONES))
    parser.add_argument(
        "--backbone-weights", default=None, help="Weights file for resnet50 (NEOPAIN_RESNET50_WEIGHTS)."
    )
    parser.add_argument(
        "--epochs", type=int, default=60, help="Most epochs; early stopping usually ends sooner (default 60)."
    )
    parser.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate (paper: 1e-5).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patience", type=int, default=10, help="Early-stopping patience in epochs (validation loss).")
    parser.add_argument(
        "--val-subjects",
        type=int,
        default=None,
        help="Training subjects held out for early stopping (default ~20%%, at least 1).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--finetune",
        choices=["last", "head", "all"],
        default="last",
        help="last: last backbone block + head (default); head: backbone frozen; all: paper's full fine-tune.",
    )
    parser.add_argument("--freeze-backbone", action="store_true", help="Same as --finetune head (fastest).")
    parser.add_argument(
        "--augment-views",
        type=int,
        default=4,
        help="Augmented views (rotation 0-15, flip) precomputed per image for last/head (default 4).",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="Missed-pain target for the guaranteed threshold (default: the unit's, else 0.05).",
    )
    parser.add_argument("--cache", default=None, help="Face-crop cache folder (default $NEOPAIN_DATA_DIR/cache).")
    parser.add_argument(
        "--detector",
        default=None,
        choices=["retinaface", "yolo", "none"],
        help="Face detector for raw images (default retinaface; 'none' if images are face crops).",
    )
    parser.add_argument("--detector-weights", default=None, help="YOLO face weights for --detector yolo.")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: NEOPAIN_DEVICE, else CUDA when present).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    parser.add_argument("--json", action="store_true", help="End with one line of JSON.")


def train_config(options: dict[str, Any], backbone: str):
    from inference.training import TrainConfig

    try:
        return TrainConfig(
            backbone=backbone,
            backbone_weights=options["backbone_weights"],
            finetune="head" if options["freeze_backbone"] else options["finetune"],
            epochs=options["epochs"],
            lr=options["lr"],
            batch_size=options["batch_size"],
            patience=options["patience"],
            val_subjects=options["val_subjects"],
            augment_views=options["augment_views"],
            seed=options["seed"],
            device=options["device"],
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def crop_settings(options: dict[str, Any], dataset_info: dict[str, Any]):
    from inference.training import CropSettings

    detector = options["detector"] or ("none" if dataset_info.get("cropped") else "retinaface")
    return CropSettings(detector=detector, detector_weights=options["detector_weights"])


def show_progress(options: dict[str, Any]) -> bool:
    return not options["no_progress"] and options.get("verbosity", 1) > 0


def json_line(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def guarantee_line(g: dict[str, Any]) -> str:
    """One line on the conformal threshold, saying so when alpha cannot be met with this n."""
    if g["all_to_nurse"]:
        needed = math.ceil(1 / g["alpha"] - 1)
        return (
            f"guaranteed threshold: none below 1.0 meets missed pain <= {g['alpha']} with n={g['n_calibration']} "
            f"calibration frames (CRC needs n >= {needed} for this alpha, and few misses): every case to a nurse"
        )
    return (
        f"guaranteed threshold {g['threshold']:.3f}: expected missed pain <= {g['alpha']} of all frames "
        f"(conformal risk control, n={g['n_calibration']}); {g['expected_manual_share']:.1%} of cases to a nurse"
    )
