"""A partial index in the open queue's exact sort order (unit, confidence, created_at, id).

With 1,000,000 predictions the nurse queue sorted every open case of the unit on each request
(~200 ms at 5,000 open cases, ~2 s at 110,000); with this index PostgreSQL reads the first page
straight off the index (scripts/bench_queue.py, docs/performance.md).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("triage", "0003_cache_table")]

    operations = [
        migrations.AddIndex(
            model_name="triagecase",
            index=models.Index(
                condition=models.Q(("status__in", ["open", "claimed"])),
                fields=["unit", "confidence", "created_at", "id"],
                name="case_queue_open",
            ),
        ),
    ]
