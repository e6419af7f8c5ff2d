"""Replay a labelled, time-ordered stream of automatic verdicts through alert rules: the trade-off.

For each rule "at least k of the last n automatic verdicts within W seconds are pain" it prints
alerts per hour (each time the rule holds on a pain verdict: a new alert or a repeat counted on
the open one), false alerts per hour (those outside every pain episode), pages per hour (new
alerts after the cooldown, which repeats extend), pain episodes missed, and the median delay from
an episode's start to the first alert in it. The rule is :func:`triage.services.alerts.alert_rule_fires`, the worker's own.
"""

from __future__ import annotations

import csv
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from triage.services.alerts import alert_rule_fires

DEFAULT_RULES = ("1,1,300", "2,2,60", "2,3,60", "3,5,120", "4,6,120")
PAIN_WORDS = {"pain", "1", "true", "yes"}
NO_PAIN_WORDS = {"nonpain", "no_pain", "0", "false", "no"}


@dataclass(frozen=True)
class Verdict:
    neonate: str
    time_s: float
    pain: bool  # the automatic verdict
    truth: bool  # the reference label (a nurse's NIPS, a video annotator)


@dataclass(frozen=True)
class Rule:
    k: int
    n: int
    window_s: float

    @classmethod
    def parse(cls, text: str) -> Rule:
        try:
            k, n, window = (part.strip() for part in text.split(","))
            rule = cls(int(k), int(n), float(window))
        except ValueError:
            raise CommandError(f"--rule {text!r}: expected k,n,W such as 2,3,120") from None
        if not 1 <= rule.k <= rule.n or rule.window_s <= 0:
            raise CommandError(f"--rule {text!r}: need 1 <= k <= n and W > 0")
        return rule

    def __str__(self) -> str:
        return f"{self.k} of {self.n} in {self.window_s:g} s"


@dataclass(frozen=True)
class ReplayResult:
    rule: Rule
    hours: float
    alerts: int
    false_alerts: int
    pages: int
    episodes: int
    missed: int
    delays_s: tuple[float, ...]

    @property
    def median_delay_s(self) -> float | None:
        return statistics.median(self.delays_s) if self.delays_s else None


def _label(value: str, *, column: str, line: int) -> bool:
    word = value.strip().lower()
    if word in PAIN_WORDS:
        return True
    if word in NO_PAIN_WORDS:
        return False
    raise CommandError(f"line {line}: {column}={value!r} is neither pain nor nonpain (or 1/0)")


def stream_read(path: Path) -> list[Verdict]:
    """A CSV with ``time_s``, ``verdict``, ``truth`` (and optionally ``neonate``), any order of rows."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc
    if not rows or not {"time_s", "verdict", "truth"} <= set(rows[0]):
        raise CommandError(f"{path}: expected a header with time_s, verdict, truth (and optionally neonate)")
    verdicts = []
    for line, row in enumerate(rows, start=2):
        try:
            time_s = float(row["time_s"])
        except ValueError:
            raise CommandError(f"line {line}: time_s={row['time_s']!r} is not a number") from None
        verdicts.append(
            Verdict(
                neonate=(row.get("neonate") or "-").strip(),
                time_s=time_s,
                pain=_label(row["verdict"], column="verdict", line=line),
                truth=_label(row["truth"], column="truth", line=line),
            )
        )
    return sorted(verdicts, key=lambda v: (v.neonate, v.time_s))


def stream_simulate(*, hours: float, seed: int = 0) -> list[Verdict]:
    """A synthetic stream for one neonate, with the assumptions printed by the command.

    Keyframes arrive at random with a mean gap of 10 s (change keyframes plus the agent's 30 s
    heartbeat); a pain episode starts about once an hour and lasts 1 to 5 minutes; an automatic
    verdict says pain with probability 0.8 during an episode (sensitivity) and 0.05 outside one.
    """
    rng = random.Random(seed)
    end = hours * 3600
    episodes, t = [], rng.expovariate(1 / 3600)
    while t < end:
        length = rng.uniform(60, 300)
        episodes.append((t, t + length))
        t += length + rng.expovariate(1 / 3600)
    verdicts, t = [], 0.0
    while t < end:
        truth = any(start <= t <= stop for start, stop in episodes)
        verdicts.append(Verdict("sim", t, rng.random() < (0.8 if truth else 0.05), truth))
        t += rng.expovariate(1 / 10)
    return verdicts


def replay(verdicts: list[Verdict], rule: Rule, *, cooldown_s: float) -> ReplayResult:
    """Run ``rule`` over each neonate's stream in time order (rows sorted by neonate, then time)."""
    by_neonate: dict[str, list[Verdict]] = defaultdict(list)
    for verdict in verdicts:
        by_neonate[verdict.neonate].append(verdict)
    alerts = false_alerts = pages = episodes = missed = 0
    delays: list[float] = []
    span_s = 0.0
    for stream in by_neonate.values():
        span_s += stream[-1].time_s - stream[0].time_s if len(stream) > 1 else 0.0
        seen: list[tuple[float, bool]] = []
        last_page: float | None = None
        episode_start: float | None = None
        caught = False
        for verdict in stream:
            if verdict.truth and episode_start is None:
                episode_start, caught, episodes = verdict.time_s, False, episodes + 1
            elif not verdict.truth and episode_start is not None:
                missed += 0 if caught else 1
                episode_start = None
            seen.append((verdict.time_s, verdict.pain))
            fires = verdict.pain and alert_rule_fires(
                seen[-rule.n :], at=verdict.time_s, k=rule.k, n=rule.n, window=rule.window_s
            )
            if not fires:
                continue
            alerts += 1
            false_alerts += 0 if verdict.truth else 1
            if episode_start is not None and not caught:
                caught = True
                delays.append(verdict.time_s - episode_start)
            if last_page is None or verdict.time_s - last_page >= cooldown_s:
                pages += 1
            last_page = verdict.time_s  # repeats inside the cooldown extend it, as alert_raise does
        if episode_start is not None and not caught:
            missed += 1
    return ReplayResult(rule, span_s / 3600, alerts, false_alerts, pages, episodes, missed, tuple(delays))


class Command(BaseCommand):
    help = "Replay a labelled, time-ordered stream of automatic verdicts through k-of-n-within-W alert rules."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--stream", type=Path, help="CSV: time_s, verdict, truth[, neonate].")
        source.add_argument("--simulate", type=float, metavar="HOURS", help="A synthetic stream of this length.")
        parser.add_argument("--seed", type=int, default=0, help="Seed of --simulate.")
        parser.add_argument(
            "--rule", action="append", default=None, metavar="K,N,W", help=f"Repeatable; default {DEFAULT_RULES}."
        )
        parser.add_argument("--cooldown-minutes", type=float, default=10.0, help="The unit's alert cooldown.")

    def handle(self, *args, **options):
        rules = [Rule.parse(text) for text in options["rule"] or DEFAULT_RULES]
        if options["stream"] is not None:
            verdicts = stream_read(options["stream"])
            self.stdout.write(f"stream {options['stream']}: {len(verdicts)} verdicts")
        else:
            if not options["simulate"] > 0:
                raise CommandError("--simulate needs a positive number of hours")
            verdicts = stream_simulate(hours=options["simulate"], seed=options["seed"])
            self.stdout.write(
                f"simulated {options['simulate']:g} h (seed {options['seed']}): a keyframe every 10 s on average, "
                "a 1-5 min pain episode about once an hour, verdicts pain with p=0.8 in an episode and 0.05 outside"
            )
        if not verdicts:
            raise CommandError("the stream has no verdicts")
        self.stdout.write(f"cooldown {options['cooldown_minutes']:g} min")
        self.stdout.write(
            f"{'rule':<18} {'alerts/h':>8} {'false/h':>8} {'pages/h':>8} {'episodes':>8} {'missed':>6} "
            f"{'median delay s':>14}"
        )
        for rule in rules:
            result = replay(verdicts, rule, cooldown_s=options["cooldown_minutes"] * 60)
            hours = result.hours or float("nan")
            delay = "-" if result.median_delay_s is None else f"{result.median_delay_s:.0f}"
            self.stdout.write(
                f"{rule!s:<18} {result.alerts / hours:>8.2f} {result.false_alerts / hours:>8.2f} "
                f"{result.pages / hours:>8.2f} {result.episodes:>8} {result.missed:>6} {delay:>14}"
            )
