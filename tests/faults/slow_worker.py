"""``python -m tests.faults.slow_worker <celery worker args>``: a real Celery worker whose model hangs.

The pipeline is replaced, before the pool forks, by one whose ``run_batch`` sleeps for
``NEOPAIN_FAULT_SLOW_SECONDS``: the batch can only end through the task's time limit.
"""

from __future__ import annotations

import os
import sys
import time


class HangingPipeline:
    model = None

    def run_batch(self, images):
        time.sleep(float(os.environ.get("NEOPAIN_FAULT_SLOW_SECONDS", "600")))
        raise AssertionError("the time limit should have stopped this batch")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neopain_site.settings")
    import django

    django.setup()
    # What a real worker's model preload imports, imported here before the pool forks: a time limit
    # must interrupt the batch, not the first import of torch (a half-imported module stays broken).
    import inference.bundle  # noqa: F401
    from triage.services import worker as services

    services._pipeline_for = lambda **kwargs: (HangingPipeline(), "retinaface")
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
