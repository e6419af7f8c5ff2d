"""The planted facial-action generator: labels, flips, seeds and where the actions land."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.learning.planted_faces import actions_apply, faces_choose, planted_faces_write


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.glob("*/*/*.jpg"))


def test_it_writes_subjects_classes_and_flipped_labels(tmp_path):
    out = planted_faces_write(tmp_path / "a", faces="astronaut", subjects=3, pain=3, nonpain=5, seed=1, flip_share=0.1)
    files = _files(out)
    assert len(files) == 3 * 8
    description = json.loads((out / "planted.json").read_text())
    # 10% of 24 frames flipped: the folder says the other class than the pixels (p/n prefix).
    assert len(description["flipped_labels"]) == 2
    for path in files:
        subject, label, name = path.split("/")
        shows_pain = name.startswith("p")
        assert (
            (label == "pain") != shows_pain
            if path in description["flipped_labels"]
            else (label == "pain") == shows_pain
        )
    # Subjects beyond the faces chosen reuse the face, mirrored and recoloured.
    assert [v["variant"] for v in description["subjects"].values()] == [0, 1, 2]


def test_a_seed_gives_the_same_set_and_another_seed_another(tmp_path):
    kwargs = {"faces": "astronaut", "subjects": 2, "pain": 1, "nonpain": 2}
    first = planted_faces_write(tmp_path / "1", seed=3, **kwargs)
    again = planted_faces_write(tmp_path / "2", seed=3, **kwargs)
    other = planted_faces_write(tmp_path / "3", seed=4, **kwargs)
    assert [(first / f).read_bytes() for f in _files(first)] == [(again / f).read_bytes() for f in _files(again)]
    assert [(first / f).read_bytes() for f in _files(first)] != [(other / f).read_bytes() for f in _files(other)]


def test_the_actions_change_the_eyes_brows_and_mouth_only():
    (face,) = faces_choose("astronaut")
    x, y, w, h = face.box
    pixels = face.photo.astype(np.float32)
    marks = np.asarray(face.landmarks, dtype=np.float32)
    changed = np.abs(actions_apply(pixels, marks, {"eye_squeeze": 1, "brow_furrow": 1, "mouth_stretch": 1}) - pixels)
    changed = changed.mean(axis=2)
    for px, py in marks[[0, 1, 3, 4]].astype(int):
        assert changed[py - 6 : py + 7, px - 6 : px + 7].mean() > 4, (px, py)
    # Far from the face (the photo's corners) nothing moves; at rest nothing at all.
    assert changed[:40, :40].max() < 0.5 and changed[-40:, -40:].max() < 0.5
    assert np.array_equal(actions_apply(pixels, marks, {}), pixels)


def test_it_rejects_an_unknown_face():
    with pytest.raises(ValueError, match="unknown face ids"):
        faces_choose("astronaut,nobody")
