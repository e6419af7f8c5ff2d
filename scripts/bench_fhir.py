#!/usr/bin/env python
"""FHIR search and Bulk Data export on a unit with many observations (issue 18).

Seeds a throw-away site (its own data dir; SQLite unless ``--database-url`` names a PostgreSQL
database, which is dropped and re-created) with ``--predictions`` model verdicts for one neonate of
one unit, a quarter of them nurse cases decided with a NIPS score, by bulk inserts. Then, in this
process (Django test client: middleware, token auth, ORM, JSON rendering; no network), it times as
a nurse ``GET /fhir/Observation?patient=MRN&_count=50`` (first page), the same at a deep offset
(the last page), with a ``date=ge`` filter, and one ``$export`` run (the Celery task's service,
every resource type), and prints p50/p95 over ``--requests`` requests and the SQL queries per page.

Last line: ``bench_fhir: first_page_p95_ms=... last_page_p95_ms=... export_s=... observations=...``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup(data_dir: str, database_url: str | None) -> None:
    os.environ["NEOPAIN_DATA_DIR"] = data_dir
    # Never the operator's own database or Redis: SQLite in the throw-away dir unless --database-url.
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neopain_site.settings")
    if database_url:
        os.environ["DATABASE_URL"] = database_url
        import psycopg2

        admin, _, name = database_url.rpartition("/")
        connection = psycopg2.connect(f"{admin}/postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _seed(n: int):
    from datetime import timedelta

    from django.utils import timezone

    from annotations.models import NipsAssessment
    from triage.models import Frame, ModelVersion, Neonate, Prediction, Role, TriageCase, Unit, User

    unit = Unit.objects.create(name="Bench NICU", code="bench")
    nurse = User.objects.create_user("bench-nurse", password="x" * 12, role=Role.NURSE, unit=unit)
    neonate = Neonate.objects.create(mrn="MRN-BENCH", unit=unit)
    model = ModelVersion.objects.create(name="painnet", version="1", bundle_path="-", sha256="a" * 64, status="active")
    start = timezone.now() - timedelta(days=30)
    step = timedelta(days=30) / n  # spread over the last 30 days
    frames = Frame.objects.bulk_create(
        Frame(
            neonate=neonate,
            unit=unit,
            image=f"frames/{i}.png",
            sha256=f"{i:064x}",
            image_format="PNG",
            width=64,
            height=48,
            size_bytes=1,
            status="done",
            captured_at=start + step * i,
        )
        for i in range(n)
    )
    predictions = Prediction.objects.bulk_create(
        Prediction(
            frame=frame,
            model_version=model,
            p_pain=0.52 if i % 4 == 0 else 0.9,
            label="pain",
            confidence=0.52 if i % 4 == 0 else 0.9,
            threshold=0.55,
            routed_to="nurse" if i % 4 == 0 else "auto",
            weights_sha256=model.sha256,
            frame_sha256=frame.sha256,
            box_x=0,
            box_y=0,
            box_w=1,
            box_h=1,
        )
        for i, frame in enumerate(frames)
    )
    cases = TriageCase.objects.bulk_create(
        TriageCase(prediction=p, unit=unit, neonate=neonate, confidence=0.52, status="decided", final_pain=True)
        for i, p in enumerate(predictions)
        if i % 4 == 0
    )
    NipsAssessment.objects.bulk_create(
        NipsAssessment(
            case=c,
            nurse=nurse,
            face=1,
            cry=2,
            breathing=0,
            arms=1,
            legs=0,
            arousal=1,
            total=5,
            rule="total>=3",
            pain=True,
        )
        for c in cases
    )
    from django.db import connection

    if connection.vendor == "postgresql":  # fresh bulk inserts: plan on real statistics, as autovacuum would
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return nurse, neonate, unit


def _time(client, url: str, requests: int) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.content[:300]
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    if os.environ.get("BENCH_FHIR_QUERIES"):
        for q in queries.captured_queries:
            print(f"   {q['time']}s {q['sql'][:150] if float(q['time']) < 0.05 else q['sql'][-400:]}")
            if float(q["time"]) > 0.05:
                with connection.cursor() as cursor:
                    cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + q["sql"])
                    print("     ", cursor.fetchall())
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], len(queries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--database-url", default=None, help="postgres://.../neopain_bench_fhir (dropped and re-created)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-fhir-") as data_dir:
        _setup(data_dir, args.database_url)
        from datetime import timedelta

        from django.utils import timezone
        from rest_framework.test import APIClient

        from ehr import services
        from ehr.models import BulkExport

        began = time.perf_counter()
        nurse, neonate, unit = _seed(args.predictions)
        print(
            f"seeded {args.predictions} verdicts + {args.predictions // 4} NIPS scores in {time.perf_counter() - began:.1f} s"
        )
        client = APIClient()
        client.force_authenticate(nurse)
        total = args.predictions + args.predictions // 4
        base = f"/fhir/Observation?patient={neonate.mrn}&_count=50"
        week_ago = (timezone.now() - timedelta(days=7)).date().isoformat()
        rows = {
            "first page": base,
            "last page": f"{base}&_offset={total - 50}",
            "date=ge (last 7 days)": f"{base}&date=ge{week_ago}",
        }
        figures = {}
        for name, url in rows.items():
            p50, p95, queries = _time(client, url, args.requests)
            figures[name] = p95
            print(f"{name:24s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  {queries} queries")
        export = BulkExport.objects.create(unit=unit, requested_by=nurse, request_url="bench")
        began = time.perf_counter()
        services.bulk_export_run(export_id=export.pk)
        export_s = time.perf_counter() - began
        export.refresh_from_db()
        print(f"$export: {export_s:.1f} s, {export.files}")
        print(
            f"bench_fhir: first_page_p95_ms={figures['first page']:.1f} last_page_p95_ms={figures['last page']:.1f} "
            f"export_s={export_s:.1f} observations={total}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
