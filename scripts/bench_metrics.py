#!/usr/bin/env python
"""What one /metrics scrape costs as the tables grow (issue 18, item 4).

A throw-away SQLite site (or ``DATABASE_URL``) filled with ``--frames`` frames, one prediction
each (a tenth routed to nurses, half of those still open), and an alert per 50 frames, over
``--units`` units; then ``--scrapes`` full scrapes (database + broker figures) through the view,
timed. The last line is ``bench_metrics: frames=... p50_ms=... max_ms=... bytes=...``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=4)
    parser.add_argument("--scrapes", type=int, default=10)
    args = parser.parse_args()

    os.environ.setdefault("NEOPAIN_DATA_DIR", tempfile.mkdtemp(prefix="neopain-bench-metrics-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "neopain_site.settings"
    os.environ["NEOPAIN_METRICS_TOKEN"] = token = "bench-metrics-token-0123456789"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from triage.models import Alert, Frame, ModelVersion, Neonate, Prediction, TriageCase, Unit

    call_command("migrate", verbosity=0)
    now = timezone.now()
    model = ModelVersion.objects.create(name="painnet", version="bench", bundle_path="-", sha256="0" * 64)
    started = time.perf_counter()
    for u in range(args.units):
        unit = Unit.objects.create(name=f"Bench {u}", code=f"bench-{u}")
        neonate = Neonate.objects.create(unit=unit, mrn=f"B-{u}")
        n = args.frames // args.units
        frames = Frame.objects.bulk_create(
            Frame(
                neonate=neonate,
                unit=unit,
                image=f"f/{u}-{i}.png",
                sha256=f"{u}-{i}",
                image_format="PNG",
                width=64,
                height=48,
                size_bytes=100,
                status=Frame.Status.DONE,
            )
            for i in range(n)
        )
        predictions = Prediction.objects.bulk_create(
            Prediction(
                frame=f,
                model_version=model,
                p_pain=0.5,
                label="pain",
                confidence=0.5,
                threshold=0.55,
                routed_to="nurse" if i % 10 == 0 else "auto",
                weights_sha256="0" * 64,
                frame_sha256=f.sha256,
                box_x=0,
                box_y=0,
                box_w=10,
                box_h=10,
            )
            for i, f in enumerate(frames)
        )
        TriageCase.objects.bulk_create(
            TriageCase(
                prediction=p, unit=unit, neonate=neonate, confidence=0.5, status="open" if i % 20 == 0 else "decided"
            )
            for i, p in enumerate(predictions)
            if p.routed_to == "nurse"
        )
        Alert.objects.bulk_create(
            Alert(neonate=neonate, unit=unit, prediction=p, source="auto") for p in predictions[::50]
        )
    print(f"filled {args.frames} frames in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    times, size = [], 0
    for _ in range(args.scrapes):
        t0 = time.perf_counter()
        response = client.get("/metrics")
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
        size = len(response.content)
    print(
        f"bench_metrics: frames={args.frames} units={args.units} p50_ms={statistics.median(times):.0f} "
        f"max_ms={max(times):.0f} bytes={size} (at {now:%Y-%m-%d %H:%M} UTC)"
    )


if __name__ == "__main__":
    main()
