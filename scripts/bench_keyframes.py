#!/usr/bin/env python
"""Keyframe selection: how much it thins a clip, and what it costs per second of video (goal 6).

Writes a realistic bedside clip (640x480, 25 fps, 20 s, MPEG-4 in .mp4 via OpenCV): a real face
(scikit-image's public-domain astronaut) on a blanket-like background that drifts, zooms and
"breathes" slowly, with sensor noise on every frame, and a few abrupt changes a keyframe should
catch: a hand passing over the face, the lamp switched on, the head turning, a bump of the camera.
Then runs :func:`inference.keyframes.select_keyframes` as the worker does (defaults: every frame
analysed, 0.5 s minimum gap, at most 20) and with ``--sample-fps``, best of ``--repeats`` runs.

The last line is ``bench_keyframes: frames=... keyframes=... reduction=...x ms_per_video_second=...``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit

GOAL_REDUCTION = 5.0
WIDTH, HEIGHT, FPS, SECONDS = 640, 480, 25, 20
#: (start s, end s, what): the scripted abrupt changes.
EVENTS = [
    (4.0, 5.2, "a hand passes over the face"),
    (9.0, None, "the lamp is switched on"),
    (13.0, None, "the head turns"),
    (16.5, None, "the camera is bumped"),
]


def write_clip(path: Path, seconds: float = SECONDS, fps: int = FPS, seed: int = 0) -> int:
    """Write the synthetic bedside clip; returns its frame count."""
    from skimage import data as skdata

    rng = np.random.default_rng(seed)
    face = cv2.cvtColor(skdata.astronaut()[20:260, 130:350], cv2.COLOR_RGB2BGR)  # 240x220 head and shoulders
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    blanket = np.stack(
        [110 + 25 * np.sin(xx / 37.0) * np.cos(yy / 53.0), 140 + 20 * np.sin(yy / 29.0), 170 + 15 * np.cos(xx / 41.0)],
        axis=-1,
    )
    blanket += rng.normal(0, 6, blanket.shape)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MPEG-4 here")
    count = int(seconds * fps)
    try:
        for index in range(count):
            t = index / fps
            frame = blanket.copy()
            scale = 1.0 + 0.08 * np.sin(2 * np.pi * t / 11.0) + 0.01 * np.sin(2 * np.pi * t / 1.2)  # zoom + breathing
            cx = WIDTH / 2 + 40 * np.sin(2 * np.pi * t / 9.0)  # slow pan
            cy = HEIGHT / 2 + 15 * np.sin(2 * np.pi * t / 7.0)
            head = face[:, ::-1] if t >= 13.0 else face  # the head turns
            if t >= 16.5:  # the camera is bumped
                cx, cy = cx - 60, cy + 35
            h, w = (np.array(head.shape[:2]) * 1.35 * scale).astype(int)
            tile = cv2.resize(head, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            x0, y0 = int(cx - w / 2), int(cy - h / 2)
            xs, ys = max(0, x0), max(0, y0)
            xe, ye = min(WIDTH, x0 + w), min(HEIGHT, y0 + h)
            frame[ys:ye, xs:xe] = tile[ys - y0 : ye - y0, xs - x0 : xe - x0]
            if 4.0 <= t < 5.2:  # a nurse's hand sweeps across
                hx = int(-200 + (t - 4.0) / 1.2 * (WIDTH + 400))
                cv2.ellipse(frame, (hx, int(cy)), (150, 95), 15, 0, 360, (120, 150, 205), -1)
            if t >= 9.0:  # the lamp is switched on
                frame = frame * 1.35 + 12
            frame += rng.normal(0, 2.5, frame.shape)  # sensor noise
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return count


def timed(path: Path, repeats: int, **options):
    from inference.keyframes import select_keyframes

    best, keyframes = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        keyframes = select_keyframes(path, **options)
        best = min(best, time.perf_counter() - start)
    return best, keyframes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed run instead of three")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--sample-fps", type=float, default=5.0, help="second configuration: frames analysed per second"
    )
    parser.add_argument("--keep", default=None, help="also save the clip to this path")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    print(f"# machine: {benchkit.machine_line()}")
    print(f"# OpenCV {cv2.__version__}; clip {WIDTH}x{HEIGHT}, {FPS} fps, {SECONDS} s; best of {repeats} runs")
    with tempfile.TemporaryDirectory(prefix="neopain-bench-keyframes-") as folder:
        clip = Path(folder) / "bedside.mp4"
        started = time.perf_counter()
        frames = write_clip(clip)
        print(
            f"# wrote {frames} frames ({clip.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s; "
            "scripted changes: " + "; ".join(f"{start:g} s {what}" for start, _end, what in EVENTS)
        )
        if args.keep:
            Path(args.keep).write_bytes(clip.read_bytes())
        headline = None
        for label, options in (
            ("every frame (worker default)", {}),
            (f"{args.sample_fps:g} fps sampled", {"sample_fps": args.sample_fps}),
        ):
            seconds, keyframes = timed(clip, repeats, **options)
            reduction = frames / max(1, len(keyframes))
            per_second = seconds * 1000 / SECONDS
            times = ", ".join(f"{k.time_s:.2f}" for k in keyframes)
            print(
                f"{label:<30} {len(keyframes):3d} keyframes of {frames} frames = {reduction:5.1f}x fewer; "
                f"{seconds * 1000:7.1f} ms for {SECONDS} s of video = {per_second:5.1f} ms per video second "
                f"({SECONDS / seconds:4.0f}x real time)"
            )
            print(f"{'':<30} at {times} s")
            if headline is None:
                headline = (len(keyframes), reduction, per_second)
                caught = [
                    what
                    for start, _end, what in EVENTS
                    if any(start - 0.2 <= k.time_s <= start + 1.3 for k in keyframes)
                ]
                print(f"{'':<30} scripted changes caught: {len(caught)}/{len(EVENTS)} ({'; '.join(caught)})")
    count, reduction, per_second = headline
    print(f"# goal: >= {GOAL_REDUCTION:g}x fewer frames: {'met' if reduction >= GOAL_REDUCTION else 'NOT met'}")
    print(
        f"bench_keyframes: frames={frames} keyframes={count} reduction={reduction:.1f}x "
        f"ms_per_video_second={per_second:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
