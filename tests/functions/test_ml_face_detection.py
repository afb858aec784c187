"""builtin-face-detection (reference §7.10) on Teaclave's fixture photograph."""

import json

import pytest
from ml_support import FUNCTIONS, run

from teaclave.core.errors import Status, TeaclaveError
from teaclave.functions.face_detection import (
    BUILTIN,
    MAX_IMAGE_BYTES,
    FaceDetectionArguments,
    jpeg_size,
)
from teaclave.functions.runtime import MemoryRuntime

PHOTO = (FUNCTIONS / "face_detection" / "input.jpg").read_bytes()
FIXTURE_ARGUMENTS = {
    "min_face_size": 20,
    "score_thresh": 2.0,
    "pyramid_scale_factor": 0.8,
    "slide_window_step_x": 4,
    "slide_window_step_y": 4,
}


def detect(image: bytes, **arguments: object) -> list[dict[str, object]]:
    summary, _ = run("builtin-face-detection", {"image": list(image), **arguments}, {})
    faces: list[dict[str, object]] = json.loads(summary)
    return faces


def test_fixture_faces() -> None:
    # The 1927 Solvay photograph: 29 people; rustface reported 29 (overlapping) boxes.
    faces = detect(PHOTO, **FIXTURE_ARGUMENTS)
    assert len(faces) == 28
    width, height = jpeg_size(PHOTO)
    assert (width, height) == (1666, 1136)
    for face in faces:
        assert set(face) == {"bbox", "score"}
        box = face["bbox"]
        assert isinstance(box, dict)
        assert 0 <= box["x"] <= width - box["width"]
        assert 0 <= box["y"] <= height - box["height"]
        assert 20 <= box["width"] == box["height"] <= 100
        assert isinstance(face["score"], float)
        assert face["score"] >= 2.0


def test_settings_narrow_the_search() -> None:
    everything = detect(PHOTO, score_thresh=0.01)
    assert len(everything) == 29  # one more, a low-scoring box on a jacket
    large = detect(PHOTO, min_face_size=80)
    assert 0 < len(large) < 28
    assert all(face["bbox"]["width"] >= 80 for face in large)  # type: ignore[index]
    assert detect(PHOTO, min_face_size=60, max_face_size=40) == []
    assert len(detect(PHOTO, score_thresh=8.0)) < 28


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"window_size": 19}, "window_size must be at least 20"),
        ({"min_face_size": 10}, "min_face_size must be at least 20"),
        ({"slide_window_step_x": 0}, "slide_window_step_x must be positive"),
        ({"pyramid_scale_factor": 1.0}, "pyramid_scale_factor must be from 0.01 to 0.99"),
        ({"pyramid_scale_factor": 0.001}, "pyramid_scale_factor must be from 0.01 to 0.99"),
        ({"score_thresh": 0}, "score_thresh must be positive"),
        ({"score_thresh": "2"}, "Cannot deserialize arguments: 'score_thresh' must be a number"),
        ({"max_face_size": -1}, "Cannot deserialize arguments: 'max_face_size' must be an"),
    ],
)
def test_bad_settings(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(TeaclaveError, match=f"^{message}") as info:
        detect(PHOTO, **arguments)
    assert info.value.status is Status.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"", "image is not a JPEG file"),
        (b"\x89PNG\r\n\x1a\n" + PHOTO[8:], "image is not a JPEG file"),
        (PHOTO[:2] + b"\xff\xd9", "image is not a JPEG file: no frame header"),
        (PHOTO[:600], "image cannot be decoded"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff" + b"\x00" * 20, "image has more than"),
    ],
)
def test_bad_images(image: bytes, message: str) -> None:
    with pytest.raises(TeaclaveError, match=f"^{message}") as info:
        detect(image)
    assert info.value.status is Status.INVALID_ARGUMENT


def test_image_size_limit() -> None:
    # Called directly: a 16 MiB image as a JSON array takes seconds to encode.
    arguments = FaceDetectionArguments(image=b"\xff\xd8" + bytes(MAX_IMAGE_BYTES))
    with pytest.raises(TeaclaveError, match=f"^image is larger than {MAX_IMAGE_BYTES} bytes$"):
        BUILTIN.run(arguments, MemoryRuntime({}, frozenset()))
