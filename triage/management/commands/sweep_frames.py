"""Re-queue frames stuck in queued/processing (what beat runs every minute)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from triage import services


class Command(BaseCommand):
    help = "Publish again frames stuck in queued/processing longer than NEOPAIN_STUCK_FRAME_SECONDS."

    def add_arguments(self, parser):
        parser.add_argument("--stuck-seconds", type=int, default=None, help="Override NEOPAIN_STUCK_FRAME_SECONDS.")

    def handle(self, *args, **options):
        result = services.frames_sweep(stuck_seconds=options["stuck_seconds"])
        self.stdout.write(
            f"stuck frames: {result['frames']} (published {result['published']}); "
            f"queued clips: {result['clips']} (published {result['clips_published']})"
        )
