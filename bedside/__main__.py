"""``python -m bedside --server URL --token TOKEN --neonate MRN --source SOURCE --spool DIR [--once]
[--drain-timeout S] [--max-interval S]``; every flag also from ``NEOPAIN_AGENT_*`` (README)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bedside import __version__
from bedside.agent import EXIT_CONFIG, Agent, AgentConfig
from bedside.source import Source, SourceError
from bedside.spool import DEFAULT_MAX_BYTES

TRUE = ("1", "true", "yes", "on")
FALSE = ("", "0", "false", "no", "off")


def _env(name: str) -> str | None:
    """``NEOPAIN_AGENT_<NAME>``, or the content of the file named by ``NEOPAIN_AGENT_<NAME>_FILE``."""
    value = os.environ.get(f"NEOPAIN_AGENT_{name}")
    if value is None and os.environ.get(f"NEOPAIN_AGENT_{name}_FILE"):
        value = Path(os.environ[f"NEOPAIN_AGENT_{name}_FILE"]).read_text().strip()
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _flag(text: str | None) -> bool:
    if text is None or text.strip().lower() in FALSE:
        return False
    if text.strip().lower() in TRUE:
        return True
    raise SystemExit(f"NEOPAIN_AGENT_ONCE={text!r}: use 1/0, true/false, yes/no")


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m bedside",
        description="NeoPain bedside agent: keyframes from a camera, file or stream, spooled and sent.",
        epilog="Exit status: 0 done (with --once: spool drained), 2 bad configuration or source, "
        "3 --drain-timeout passed with keyframes still spooled (they stay for the next run).",
    )
    required = {"server": "SERVER", "token": "TOKEN", "neonate": "NEONATE", "source": "SOURCE", "spool": "SPOOL"}
    helps = {
        "server": "NeoPain base URL, e.g. https://neopain.example.org",
        "token": "the camera's API token (also NEOPAIN_AGENT_TOKEN_FILE)",
        "neonate": "MRN of the neonate this camera watches",
        "source": "video file, camera index (0) or stream URL (rtsp://..., http://.../mjpeg)",
        "spool": "spool folder (keyframes wait here until the server has them)",
    }
    for flag, env in required.items():
        default = _env(env)
        cli.add_argument(
            f"--{flag}",
            default=default,
            required=default is None,
            help=f"{helps[flag]} [env NEOPAIN_AGENT_{env}]",
        )
    cli.add_argument(
        "--once",
        action="store_true",
        default=_flag(_env("ONCE")),
        help="stop reading when the source ends, drain the spool, exit [env NEOPAIN_AGENT_ONCE]",
    )
    cli.add_argument(
        "--drain-timeout",
        type=_positive,
        default=_positive(_env("DRAIN_TIMEOUT") or "120"),
        metavar="S",
        help="with --once: give up draining after S seconds, exit 3 (default 120) [env NEOPAIN_AGENT_DRAIN_TIMEOUT]",
    )
    cli.add_argument(
        "--max-interval",
        type=_positive,
        default=_positive(_env("MAX_INTERVAL") or "30"),
        metavar="S",
        help="a heartbeat keyframe at least every S seconds (default 30) [env NEOPAIN_AGENT_MAX_INTERVAL]",
    )
    cli.add_argument(
        "--spool-max-bytes",
        type=int,
        default=int(_env("SPOOL_MAX_BYTES") or DEFAULT_MAX_BYTES),
        metavar="N",
        help="spool size cap; oldest keyframes are evicted past it (default 2 GiB) [env NEOPAIN_AGENT_SPOOL_MAX_BYTES]",
    )
    cli.add_argument(
        "--detector",
        choices=("retinaface", "none"),
        default=_env("DETECTOR") or "retinaface",
        help="face detector for the face-region signal; none: scene change and heartbeats only "
        "[env NEOPAIN_AGENT_DETECTOR]",
    )
    cli.add_argument("--version", action="version", version=f"neopain-bedside {__version__}")
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("NEOPAIN_AGENT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args = parser().parse_args(argv)
    if args.spool_max_bytes <= 0:
        parser().error("--spool-max-bytes must be > 0")
    try:
        source = Source.parse(args.source)
    except SourceError as exc:
        logging.getLogger("bedside").error("%s", exc)
        return EXIT_CONFIG
    config = AgentConfig(
        server=args.server,
        token=args.token,
        neonate=args.neonate,
        source=source,
        spool_dir=Path(args.spool),
        once=args.once,
        drain_timeout_s=args.drain_timeout,
        max_interval_s=args.max_interval,
        spool_max_bytes=args.spool_max_bytes,
        detector=args.detector,
    )
    return Agent(config).run()


if __name__ == "__main__":
    sys.exit(main())
