"""Command line: ``python -m inference {predict,keyframes,info,build-bootstrap}``.

stdout carries results only (one JSON object per line with ``--json``); diagnostics go to
stderr. ``predict`` never stops on a bad file: it reports it as ``unreadable`` and goes
on; its exit status is 0 unless the command itself is wrong (usage, unusable model).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from inference.decode import DEFAULT_MAX_BYTES
from inference.outcome import STATUS_UNREADABLE, FrameOutcome

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler = {
        "predict": _cmd_predict,
        "keyframes": _cmd_keyframes,
        "info": _cmd_info,
        "build-bootstrap": _cmd_build_bootstrap,
    }[args.command]
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="pain verdict for image files")
    predict.add_argument("files", metavar="FILE", nargs="+", help="image files (JPEG, PNG, WebP, ...)")
    predict.add_argument(
        "--model", metavar="BUNDLE", help="model bundle (default: the bootstrap model, built on first use)"
    )
    predict.add_argument("--expected-sha256", metavar="HEX", help="refuse the bundle unless its sha256 matches")
    predict.add_argument("--detector", choices=("retinaface", "yolo"), default="retinaface")
    predict.add_argument("--detector-weights", metavar="PT", help="weights file for --detector yolo")
    predict.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    predict.add_argument("--batch-size", type=_positive_int, default=16, help="frames per pipeline batch")
    predict.add_argument("--json", action="store_true", help="one JSON object per line")

    keyframes = commands.add_parser("keyframes", help="keyframe indices and times of a clip")
    keyframes.add_argument("clip", metavar="CLIP")
    keyframes.add_argument("--min-gap", type=float, default=0.5, metavar="SECONDS")
    keyframes.add_argument("--max", type=_positive_int, default=20, dest="max_keyframes")
    keyframes.add_argument("--sample-fps", type=float, default=None)
    keyframes.add_argument(
        "--period",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="a keyframe at least this often (0: only changes; default 5)",
    )
    keyframes.add_argument(
        "--detector",
        choices=("retinaface", "yolo", "none"),
        default="retinaface",
        help="face tracker for the expression signal (none: whole-frame changes only)",
    )
    keyframes.add_argument("--save-dir", metavar="DIR", help="also write the keyframes as PNG files here")
    keyframes.add_argument("--json", action="store_true")

    info = commands.add_parser("info", help="print a model bundle's metadata as JSON")
    info.add_argument("bundle", metavar="BUNDLE")

    build = commands.add_parser("build-bootstrap", help="build the bootstrap bundle and print its sha256")
    build.add_argument("--output", metavar="PATH", help="default: $NEOPAIN_DATA_DIR/models/bootstrap-fer-proxy.pt")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# --------------------------------------------------------------------------- predict


def _cmd_predict(args: argparse.Namespace) -> int:
    from inference.bootstrap import bootstrap_bundle_path
    from inference.bundle import BundleError
    from inference.pipeline import get_pipeline

    try:
        bundle = Path(args.model) if args.model else bootstrap_bundle_path()
        pipeline = get_pipeline(
            bundle,
            expected_sha256=args.expected_sha256,
            detector=args.detector,
            detector_weights=args.detector_weights,
            device=args.device,
        )
    except (BundleError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = sys.stdout
    if not args.json:
        _print_table_header(out)
    for chunk in _chunks(args.files, args.batch_size):
        for name, outcome in zip(chunk, _predict_files(pipeline, chunk)):
            if args.json:
                out.write(json.dumps(outcome.to_json_dict(file=name)) + "\n")
            else:
                _print_table_row(out, name, outcome)
        out.flush()
    return EXIT_OK


def _predict_files(pipeline: Any, names: Sequence[str]) -> list[FrameOutcome]:
    """Outcomes for ``names``; files that cannot be read become ``unreadable`` outcomes."""
    outcomes: list[FrameOutcome | None] = [None] * len(names)
    readable: list[tuple[int, bytes]] = []
    for position, name in enumerate(names):
        data, problem = _read_file(Path(name), pipeline.max_bytes)
        if data is None:
            outcomes[position] = FrameOutcome(
                status=STATUS_UNREADABLE,
                reason=problem,
                model_name=pipeline.model.name,
                model_version=pipeline.model.version,
                weights_sha256=pipeline.model.sha256,
                frame_sha256=None,
            )
        else:
            readable.append((position, data))
    results = pipeline.run_batch([data for _, data in readable])
    for (position, _), outcome in zip(readable, results):
        outcomes[position] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


def _read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[bytes | None, str]:
    """File bytes, or ``None`` and why not (size checked first: never slurp a huge file)."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            return None, "not a regular file"
        if size > max_bytes:
            return None, f"file is {size} bytes, over the {max_bytes}-byte limit"
        return path.read_bytes(), ""
    except FileNotFoundError:
        return None, "file not found"
    except PermissionError:
        return None, "permission denied"
    except OSError as exc:
        return None, f"cannot read file ({exc.strerror or exc})"


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_TABLE = "{file:<32} {status:<10} {label:<8} {p_pain:>6} {conf:>6} {box:<22} {ms:>8}  {reason}"


def _print_table_header(out: TextIO) -> None:
    out.write(
        _TABLE.format(
            file="FILE",
            status="STATUS",
            label="LABEL",
            p_pain="P_PAIN",
            conf="CONF",
            box="BOX x,y,w,h",
            ms="MS",
            reason="REASON",
        )
        + "\n"
    )


def _print_table_row(out: TextIO, name: str, outcome: FrameOutcome) -> None:
    shown = name if len(name) <= 32 else "..." + name[-29:]
    out.write(
        _TABLE.format(
            file=shown,
            status=outcome.status,
            label=outcome.label or "-",
            p_pain="-" if outcome.p_pain is None else f"{outcome.p_pain:.3f}",
            conf="-" if outcome.confidence is None else f"{outcome.confidence:.3f}",
            box="-" if outcome.box is None else ",".join(str(v) for v in outcome.box),
            ms=f"{sum(outcome.timings_ms.values()):.1f}",
            reason=outcome.reason,
        ).rstrip()
        + "\n"
    )


# --------------------------------------------------------------------------- keyframes


def _cmd_keyframes(args: argparse.Namespace) -> int:
    from inference.keyframes import UnreadableClip, select_keyframes

    try:
        keyframes = select_keyframes(
            args.clip,
            min_gap_s=args.min_gap,
            max_keyframes=args.max_keyframes,
            sample_fps=args.sample_fps,
            period_s=args.period or None,
            detector=args.detector,
        )
    except UnreadableClip as exc:
        if args.json:
            print(json.dumps({"file": args.clip, "status": "unreadable", "reason": exc.reason, "keyframes": []}))
        else:
            print(f"error: {args.clip}: {exc.reason}", file=sys.stderr)
        return EXIT_FAILURE
    saved: dict[int, str] = {}
    if args.save_dir:
        folder = Path(args.save_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for keyframe in keyframes:
            target = folder / f"{Path(args.clip).stem}-{keyframe.index:06d}.png"
            keyframe.image.save(target)
            saved[keyframe.index] = str(target)
    if args.json:
        rows = [
            {
                "index": k.index,
                "time_s": k.time_s,
                "reason": k.reason,
                **({"path": saved[k.index]} if k.index in saved else {}),
            }
            for k in keyframes
        ]
        print(json.dumps({"file": args.clip, "status": "ok", "reason": "", "keyframes": rows}))
    else:
        print(f"{'INDEX':>7} {'TIME_S':>9}  REASON")
        for keyframe in keyframes:
            print(f"{keyframe.index:>7} {keyframe.time_s:>9.3f}  {keyframe.reason}")
    return EXIT_OK


# --------------------------------------------------------------------------- info / build


def _cmd_info(args: argparse.Namespace) -> int:
    from inference.bundle import BundleError, read_bundle

    try:
        payload, sha = read_bundle(args.bundle)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    state = payload["state_dict"]
    report = {
        "path": str(Path(args.bundle)),
        "sha256": sha,
        "size_bytes": os.path.getsize(args.bundle),
        "parameters": int(sum(t.numel() for t in state.values() if t.is_floating_point())),
        "metadata": payload["metadata"],
    }
    print(json.dumps(report, indent=2, sort_keys=False))
    return EXIT_OK


def _cmd_build_bootstrap(args: argparse.Namespace) -> int:
    from inference.bootstrap import bootstrap_bundle_path, build_bootstrap_bundle

    path = Path(args.output) if args.output else bootstrap_bundle_path(build=False)
    sha = build_bootstrap_bundle(path)
    print(json.dumps({"path": str(path), "sha256": sha}))
    return EXIT_OK


if __name__ == "__main__":
    # Set before torch loads OpenMP (commands import it lazily): idle threads sleep rather
    # than spin, so torch and onnxruntime do not starve each other on small CPUs.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
