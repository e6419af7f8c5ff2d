"""The fault tests' hands inside the app: run as ``python -m tests.faults.agent COMMAND`` with the
environment pointing at the private PostgreSQL/Redis (see ``harness.app_env``). Prints one JSON line.

Commands:
  bundle PATH                 build a small real PainNet bundle (MobileNetV2, random weights) at PATH
  seed --bundle PATH          a unit, a neonate, a camera with a token, a nurse; the bundle registered active
  ingest --count N [--offset K] [--republish M]
                              N distinct real-face frames through ``frame_ingest`` (published after commit);
                              then publish ``frame_process`` again for the first M (duplicate deliveries)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neopain_site.settings")
    import django

    django.setup()


def face_images(count: int, *, offset: int = 0, size: int = 160):
    """Distinct PNGs of a real face (scikit-image's astronaut): one pixel differs per image."""
    from PIL import Image
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((size, size))
    for n in range(offset, offset + count):
        image = base.copy()
        image.putpixel((n % size, size - 1 - (n // size) % 8), ((n * 7) % 256, (n * 13) % 256, n % 251))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        yield buffer.getvalue()


def cmd_bundle(args) -> dict:
    from inference.bundle import sha256_file
    from tests.support import save_painnet_bundle

    path = Path(args.path)
    if not path.exists():
        save_painnet_bundle(path, seed=15, name="painnet-faults", created_at="2025-01-01T00:00:00+00:00")
    return {"path": str(path), "sha256": sha256_file(path)}


def cmd_seed(args) -> dict:
    _setup()
    from triage import services
    from triage.models import Device, Neonate, Role, Unit, User

    unit, _ = Unit.objects.get_or_create(code="faults", defaults={"name": "NICU Faults"})
    services.unit_settings_get(unit=unit)
    neonate, _ = Neonate.objects.get_or_create(mrn="F-0001", defaults={"unit": unit, "bed": "1"})
    camera, _ = User.objects.get_or_create(username="faults-camera", defaults={"role": Role.DEVICE, "unit": unit})
    Device.objects.get_or_create(user=camera, defaults={"name": "bed-1", "unit": unit})
    nurse, created = User.objects.get_or_create(username="faults-nurse", defaults={"role": Role.NURSE, "unit": unit})
    if created:
        nurse.set_password("faults-nurse-password")
        nurse.save()
    model = services.model_version_register(bundle_path=args.bundle, status="active")
    return {
        "unit": unit.pk,
        "mrn": neonate.mrn,
        "device_token": services.api_token_create(user=camera, actor_username="faults").key,
        "nurse_token": services.api_token_create(user=nurse, actor_username="faults").key,
        "model": model.pk,
        "model_sha256": model.sha256,
    }


def cmd_ingest(args) -> dict:
    _setup()
    from triage import services
    from triage.models import Device, Neonate

    neonate = Neonate.objects.get(mrn="F-0001")
    device = Device.objects.get(name="bed-1")
    started = time.monotonic()
    ids = []
    for data in face_images(args.count, offset=args.offset):
        frame, created = services.frame_ingest(neonate=neonate, image_file=data, device=device, uploaded_by=device.user)
        if not created:
            raise SystemExit(f"frame {frame.pk} was a duplicate image: the generator must make distinct images")
        ids.append(frame.pk)
    seconds = time.monotonic() - started
    republished = services.frames_enqueue(frame_ids=ids[: args.republish]) if args.republish else 0
    return {
        "count": len(ids),
        "first": ids[0],
        "last": ids[-1],
        "seconds": round(seconds, 2),
        "republished": republished,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests.faults.agent")
    sub = parser.add_subparsers(dest="command", required=True)
    bundle = sub.add_parser("bundle")
    bundle.add_argument("path")
    seed = sub.add_parser("seed")
    seed.add_argument("--bundle", required=True)
    ingest = sub.add_parser("ingest")
    ingest.add_argument("--count", type=int, required=True)
    ingest.add_argument("--offset", type=int, default=0)
    ingest.add_argument("--republish", type=int, default=0)
    args = parser.parse_args(argv)
    result = {"bundle": cmd_bundle, "seed": cmd_seed, "ingest": cmd_ingest}[args.command](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
