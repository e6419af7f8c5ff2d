"""``python -m tests.bedside.slow_disk_agent <bedside args>``: the real agent on a disk whose fsync
takes ``BEDSIDE_TEST_FSYNC_SECONDS``: a keyframe's write is then long enough to SIGKILL in the middle."""

from __future__ import annotations

import os
import sys
import time

from bedside.__main__ import main

real_fsync = os.fsync


def slow_fsync(descriptor: int) -> None:
    time.sleep(float(os.environ.get("BEDSIDE_TEST_FSYNC_SECONDS", "1")))
    real_fsync(descriptor)


if __name__ == "__main__":
    os.fsync = slow_fsync
    sys.exit(main())
