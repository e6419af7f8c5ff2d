"""Guaranteed thresholds from a CSV of scores: the same code the app uses, for a unit or a reviewer."""

from __future__ import annotations

import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.management.commands._options import add_json_option, json_line


def scores_read(path: Path) -> tuple[list[str], list[float], list[int]]:
    """``subject,p_pain,label`` rows (header required; extra columns ignored); a clear error for bad rows."""
    if not path.is_file():
        raise CommandError(f"scores file not found: {path}")
    subjects, p_pain, labels = [], [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"subject", "p_pain", "label"} - set(reader.fieldnames or [])
        if missing:
            raise CommandError(
                f"{path.name}: missing column(s) {', '.join(sorted(missing))}; need subject,p_pain,label"
            )
        for line, row in enumerate(reader, start=2):
            try:
                p = float(row["p_pain"])
                label = int(row["label"])
            except (TypeError, ValueError):
                raise CommandError(f"{path.name} line {line}: p_pain must be a number and label 0 or 1") from None
            if not 0.0 <= p <= 1.0 or label not in (0, 1):
                raise CommandError(f"{path.name} line {line}: p_pain must be in [0, 1] and label 0 or 1")
            subject = (row["subject"] or "").strip()
            if not subject:
                raise CommandError(f"{path.name} line {line}: empty subject (the baby the frame shows)")
            subjects.append(subject)
            p_pain.append(p)
            labels.append(label)
    if not labels:
        raise CommandError(f"{path.name}: no rows")
    return subjects, p_pain, labels


class Command(BaseCommand):
    help = (
        "Print the guaranteed thresholds for a CSV of calibration scores (subject,p_pain,label): conformal risk "
        "control (expected missed pain among all frames <= alpha) and Learn-then-Test (with probability 1-delta, "
        "the chosen --loss <= alpha), each baby weighing the same, the share sent to nurses and the number of babies."
    )

    def add_arguments(self, parser):
        parser.add_argument("--scores", required=True, metavar="FILE.csv", help="Rows subject,p_pain,label.")
        parser.add_argument("--alpha", type=float, required=True, help="Missed-pain target, e.g. 0.05.")
        parser.add_argument("--delta", type=float, default=0.1, help="LTT: chance the bound fails (default 0.1).")
        parser.add_argument(
            "--loss",
            choices=("all", "auto"),
            default="all",
            help="LTT's loss: missed pain among all frames (all) or among automatic verdicts (auto). CRC bounds 'all'.",
        )
        parser.add_argument("--min-babies", type=int, default=None, help="Fewest babies for a guarantee (default 10).")
        add_json_option(parser)

    def handle(self, *args, **options):
        from inference.thresholds.risk_control import DEFAULT_MIN_SUBJECTS, CalibrationError, calibrate

        subjects, p_pain, labels = scores_read(Path(options["scores"]))
        min_subjects = options["min_babies"] if options["min_babies"] is not None else DEFAULT_MIN_SUBJECTS
        if min_subjects < 1:
            raise CommandError("--min-babies must be >= 1")
        try:
            report = calibrate(
                p_pain=p_pain,
                labels=labels,
                subjects=subjects,
                alpha=options["alpha"],
                delta=options["delta"],
                loss=options["loss"],
                min_subjects=min_subjects,
            )
        except CalibrationError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json_line(report))
            return
        w = self.stdout.write
        w(
            f"{report['n_frames']} frames of {report['n_subjects']} babies (each baby weighs the same; "
            f"at least {min_subjects} needed); alpha {report['alpha']}, delta {report['delta']}"
        )
        for key, name in (("crc", "CRC"), ("ltt", "LTT")):
            g = report[key]
            if g["all_to_nurse"]:
                w(f"{name} ({g['loss']}): no threshold: {g['reason']}; every frame to a nurse")
                continue
            auto = "n/a" if g["missed_pain_auto"] is None else f"{g['missed_pain_auto']:.1%}"
            how = "expected" if key == "crc" else f"with {1 - g['delta']:.0%} confidence"
            among = "all frames" if g["loss"] == "all" else "automatic verdicts"
            w(
                f"{name} threshold {g['threshold']:.3f}: {how} missed pain among {among} <= {g['alpha']}; "
                f"{g['manual_share']:.1%} to a nurse; on these scores missed pain {g['missed_pain_all']:.1%} of all "
                f"frames, {auto} among automatic verdicts"
            )
