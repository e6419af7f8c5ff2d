"""Face detection (RetinaFace backend) and the one-face-per-frame selection rule."""

from __future__ import annotations

import pytest
from PIL import Image, ImageFilter

from inference.decode import decode_image
from inference.detect import FaceBox, RetinaFaceDetector, get_detector, select_face
from tests.inference.inference_helpers import ASTRONAUT_FACE, exif_rotated_jpeg, on_canvas


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    found = get_detector("retinaface")
    assert isinstance(found, RetinaFaceDetector)
    return found


def test_it_finds_the_astronauts_face_with_landmarks(detector: RetinaFaceDetector, astronaut: Image.Image) -> None:
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    assert iou(face.as_tuple(), ASTRONAUT_FACE) > 0.8
    assert face.landmarks is not None and len(face.landmarks) == 5
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    assert lx < rx, "eyes should be left-to-right"
    assert abs(ly - ry) < 0.15 * face.h, "an upright face has its eyes level"
    for px, py in face.landmarks:
        assert face.x <= px <= face.x + face.w and face.y <= py <= face.y + face.h


def test_boxes_are_in_original_pixels_when_the_image_is_downscaled(
    detector: RetinaFaceDetector, astronaut: Image.Image
) -> None:
    big = astronaut.resize((2048, 2048))  # detector works at <= 640 px internally
    (face,) = detector.detect(big)
    expected = tuple(v * 4 for v in ASTRONAUT_FACE)
    assert iou(face.as_tuple(), expected) > 0.75  # type: ignore[arg-type]


def test_no_face_in_a_generated_scene(detector: RetinaFaceDetector, no_face_image: Image.Image) -> None:
    assert detector.detect(no_face_image) == []


def test_detect_batch_matches_single_calls(
    detector: RetinaFaceDetector, bedside_frame: Image.Image, no_face_image: Image.Image, astronaut: Image.Image
) -> None:
    images = [bedside_frame, no_face_image, astronaut, bedside_frame]
    batched = detector.detect_batch(images)
    single = [detector.detect(image) for image in images]
    assert [len(b) for b in batched] == [1, 0, 1, 1]
    for got, want in zip(batched, single):
        assert [f.as_tuple() for f in got] == [f.as_tuple() for f in want]


@pytest.fixture(scope="module")
def crowd(astronaut: Image.Image) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Three astronaut heads at different scales (the largest blurred) and their face boxes."""
    left, top = 147, 20
    head = astronaut.crop((left, top, 302, 200))  # 155x180 around the face
    fx, fy, fw, fh = ASTRONAUT_FACE
    sizes = [(96, 111), (155, 180), (232, 270)]
    spots = [(30, 300), (250, 40), (520, 150)]
    canvas = Image.new("RGB", (820, 460), (70, 70, 70))
    faces = []
    for (w, h), (x, y) in zip(sizes, spots):
        tile = head.resize((w, h))
        if w == 232:
            tile = tile.filter(ImageFilter.GaussianBlur(6))
        canvas.paste(tile, (x, y))
        sx, sy = w / 155, h / 180
        faces.append((round(x + (fx - left) * sx), round(y + (fy - top) * sy), round(fw * sx), round(fh * sy)))
    return canvas, faces


def test_multi_face_frame_keeps_the_highest_scoring_face(
    detector: RetinaFaceDetector, crowd: tuple[Image.Image, list[tuple[int, int, int, int]]]
) -> None:
    image, expected = crowd
    faces = detector.detect(image)
    assert len(faces) == 3
    for want in expected:
        assert max(iou(face.as_tuple(), want) for face in faces) > 0.5, f"no detection at {want}"
    chosen = select_face(faces, image.size, margin=0.0)
    best = max(faces, key=lambda f: f.score)
    assert chosen is not None and chosen.as_tuple() == best.as_tuple()
    assert all(chosen.score >= f.score for f in faces)


def test_exif_rotated_frame_gives_a_box_in_the_rotated_frame(
    detector: RetinaFaceDetector, bedside_frame: Image.Image
) -> None:
    upright = detector.detect(bedside_frame)[0]
    decoded = decode_image(exif_rotated_jpeg(bedside_frame))
    (rotated,) = detector.detect(decoded)
    assert iou(rotated.as_tuple(), upright.as_tuple()) > 0.85


def test_select_face_tie_breaks_on_size_then_adds_margin_and_clips() -> None:
    small = FaceBox(x=10, y=10, w=20, h=20, score=0.9)
    large = FaceBox(x=50, y=40, w=40, h=50, score=0.9)
    weaker = FaceBox(x=0, y=0, w=90, h=90, score=0.5)
    chosen = select_face([small, weaker, large], (100, 100), margin=0.2)
    assert chosen is not None
    # large grown by 8 px each side horizontally, 10 px vertically, clipped at 100.
    assert chosen.as_tuple() == (42, 30, 56, 70)
    assert chosen.score == 0.9
    assert select_face([small, weaker, large], (100, 100), margin=0.0).as_tuple() == (50, 40, 40, 50)  # type: ignore[union-attr]
    assert select_face([], (100, 100)) is None


def test_higher_score_beats_larger_box() -> None:
    boxes = [FaceBox(0, 0, 80, 80, 0.91), FaceBox(10, 10, 10, 10, 0.95)]
    assert select_face(boxes, (100, 100), margin=0.0).as_tuple() == (10, 10, 10, 10)  # type: ignore[union-attr]


def test_get_detector_is_cached_and_validates_names() -> None:
    assert get_detector("retinaface") is get_detector("retinaface")
    with pytest.raises(ValueError, match="unknown detector"):
        get_detector("haar")
    with pytest.raises(ValueError, match="weights"):
        get_detector("yolo")


def test_detector_copes_with_tiny_and_grey_images(detector: RetinaFaceDetector) -> None:
    assert detector.detect(Image.new("RGB", (1, 1))) == []
    assert detector.detect(Image.new("L", (50, 30), 128)) == []


def test_face_at_the_border_is_clipped(detector: RetinaFaceDetector, astronaut: Image.Image) -> None:
    # Face cut by the left edge: the box must stay inside the image.
    shifted = on_canvas(astronaut, (400, 512), (-150, 0))
    for face in detector.detect(shifted):
        assert face.x >= 0 and face.y >= 0
        assert face.x + face.w <= 400 and face.y + face.h <= 512
