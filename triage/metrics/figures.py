"""NeoPain's figures read at scrape time from the database and the broker, per unit and model version.

Counters here are counts of rows that are never deleted (frames, predictions, alerts), so they only
grow, as Prometheus counters must, and survive restarts of every process. Each scrape runs five
grouped queries; on PostgreSQL they use the tables' (unit, status) style indexes.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from triage.models import Alert, Frame, Prediction, TriageCase, Unit

logger = logging.getLogger(__name__)

#: The window of ``neopain_routing_auto_share`` (the rate over all time is in the counter).
ROUTING_SHARE_WINDOW = timedelta(hours=1)


def broker_queue_names() -> list[str]:
    """Every queue a task is routed to, and the default one."""
    routes = getattr(settings, "CELERY_TASK_ROUTES", {}) or {}
    names = {route.get("queue") for route in routes.values() if isinstance(route, dict)}
    names.add(getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery"))
    return sorted(name for name in names if name)


def broker_queue_depths() -> dict[str, int] | None:
    """Messages waiting per queue (Redis: list length; embedded broker: visible rows); None if the broker is down."""
    from celery import current_app as app  # the project's app (neopain_site.celery), as enqueue.py uses it
    from kombu.exceptions import ChannelError

    depths: dict[str, int] = {}
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            channel = connection.default_channel
            for name in broker_queue_names():
                try:
                    depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
                except ChannelError:  # never declared (Redis: an empty list does not exist)
                    depths[name] = 0
    except Exception as exc:  # any transport's connection error: report the broker down, not a 500
        logger.warning("metrics: broker unreachable (%s: %s)", type(exc).__name__, exc)
        return None
    return depths


class NeoPainCollector:
    """A prometheus_client collector: one set of database reads per scrape."""

    def __init__(self, *, with_broker: bool = True):
        self.with_broker = with_broker

    def describe(self):
        return []  # no description at registration: the collector queries only when scraped

    def collect(self):
        units = dict(Unit.objects.values_list("pk", "code"))
        yield from self._frames(units)
        yield from self._predictions(units)
        yield from self._cases(units)
        yield from self._alerts(units)
        if self.with_broker:
            yield from self._queues()

    @staticmethod
    def _frames(units):
        ingested = CounterMetricFamily(
            "neopain_frames_ingested", "Frames stored (uploads and clip keyframes), per unit.", labels=["unit"]
        )
        by_status = GaugeMetricFamily(
            "neopain_frames",
            "Frames now in each status, per unit (queued = waiting for the worker).",
            labels=["unit", "status"],
        )
        totals: dict[str, int] = dict.fromkeys(units.values(), 0)
        counts = {(code, status): 0 for code in units.values() for status in Frame.Status.values}
        for row in Frame.objects.values("unit_id", "status").annotate(n=Count("id")).order_by():
            code = units.get(row["unit_id"], str(row["unit_id"]))
            counts[(code, row["status"])] = row["n"]
            totals[code] = totals.get(code, 0) + row["n"]
        for code, n in sorted(totals.items()):
            ingested.add_metric([code], n)
        for (code, status), n in sorted(counts.items()):
            by_status.add_metric([code, status], n)
        yield ingested
        yield by_status

    @staticmethod
    def _predictions(units):
        routed = CounterMetricFamily(
            "neopain_predictions",
            "Predictions per unit, model version and route (auto: the model decided; nurse: a case was opened).",
            labels=["unit", "model_version", "routed_to"],
        )
        share = GaugeMetricFamily(
            "neopain_routing_auto_share",
            f"Share of the last {int(ROUTING_SHARE_WINDOW.total_seconds() // 60)} minutes' predictions decided by the model.",
            labels=["unit", "model_version"],
        )
        rows = (
            Prediction.objects.values("frame__unit_id", "model_version__name", "model_version__version", "routed_to")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in rows:
            code = units.get(row["frame__unit_id"], str(row["frame__unit_id"]))
            label = f"{row['model_version__name']} v{row['model_version__version']}"
            routed.add_metric([code, label, row["routed_to"]], row["n"])
        recent: dict[tuple[str, str], list[int]] = {}
        since = timezone.now() - ROUTING_SHARE_WINDOW
        window = (
            Prediction.objects.filter(created_at__gte=since)
            .values("frame__unit_id", "model_version__name", "model_version__version", "routed_to")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in window:
            key = (
                units.get(row["frame__unit_id"], str(row["frame__unit_id"])),
                f"{row['model_version__name']} v{row['model_version__version']}",
            )
            auto_total = recent.setdefault(key, [0, 0])
            auto_total[1] += row["n"]
            if row["routed_to"] == Prediction.Route.AUTO:
                auto_total[0] += row["n"]
        for key, (auto, total) in sorted(recent.items()):
            share.add_metric(list(key), auto / total)
        yield routed
        yield share

    @staticmethod
    def _cases(units):
        open_cases = GaugeMetricFamily(
            "neopain_cases_open", "Nurse cases not yet decided (open or claimed), per unit.", labels=["unit"]
        )
        oldest = GaugeMetricFamily(
            "neopain_cases_open_oldest_age_seconds",
            "Age of the oldest undecided case (since the frame was captured), per unit; 0 with none.",
            labels=["unit"],
        )
        now = timezone.now()
        found = {
            row["unit_id"]: row
            for row in TriageCase.objects.exclude(status=TriageCase.Status.DECIDED)
            .values("unit_id")
            .annotate(n=Count("id"), first=Min("captured_at"))
            .order_by()
        }
        for unit_id, code in sorted(units.items(), key=lambda item: item[1]):
            row = found.get(unit_id)
            open_cases.add_metric([code], row["n"] if row else 0)
            oldest.add_metric([code], max(0.0, (now - row["first"]).total_seconds()) if row else 0.0)
        yield open_cases
        yield oldest

    @staticmethod
    def _alerts(units):
        raised = CounterMetricFamily(
            "neopain_alerts_raised",
            "Alerts raised to the pain team, per unit and source (auto, nurse).",
            labels=["unit", "source"],
        )
        counts = {(code, source): 0 for code in units.values() for source in Alert.Source.values}
        for row in Alert.objects.values("unit_id", "source").annotate(n=Count("id")).order_by():
            counts[(units.get(row["unit_id"], str(row["unit_id"])), row["source"])] = row["n"]
        for (code, source), n in sorted(counts.items()):
            raised.add_metric([code, source], n)
        yield raised

    @staticmethod
    def _queues():
        depths = broker_queue_depths()
        up = GaugeMetricFamily("neopain_broker_up", "1 when the task broker answered this scrape.")
        up.add_metric([], 0 if depths is None else 1)
        yield up
        depth = GaugeMetricFamily(
            "neopain_queue_depth", "Task messages waiting in the broker, per queue.", labels=["queue"]
        )
        for name, n in sorted((depths or {}).items()):
            depth.add_metric([name], n)
        yield depth
