"""``builtin-face-detection`` (reference §7.10).

The ``image`` argument (a JPEG file's bytes, as a JSON array of integers) is
decoded to grayscale and searched with OpenCV's Haar cascade for frontal faces
(``haarcascade_frontalface_default.xml``, read-only data shipped in the OpenCV
wheel: the one thing this built-in reads besides its arguments). Teaclave used
rustface (SeetaFace); its settings map to OpenCV's:

* ``pyramid_scale_factor`` p (0.01 to 0.99, default 0.8): each pyramid level is p
  times the previous one, so OpenCV's ``scaleFactor`` is 1/p;
* ``min_face_size`` (at least 20, default 20) and ``max_face_size``: the smallest
  and largest face sides (OpenCV cannot find faces under its 24-pixel window);
* ``score_thresh`` (positive, default 2.0): the least score returned, the score
  being the cascade's last-stage sum (rustface's default, 3.85, is on its own
  scale; on Teaclave's photograph faces score 3.8 to 11.7, a jacket 1.3);
  overlapping windows are merged when at least 3 agree (OpenCV's default);
* ``window_size`` (at least 20) and ``slide_window_step_x``/``_y`` (positive) are
  checked but have no OpenCV counterpart: the window is the cascade's, the step 1
  or 2 pixels.

Returns the faces as JSON: ``[{"bbox": {"x", "y", "width", "height"}, "score"}, ...]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from teaclave.core.errors import Status, TeaclaveError, invalid_argument
from teaclave.functions.builtin import U32, Builtin
from teaclave.functions.runtime import Runtime

MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
CASCADE = "haarcascade_frontalface_default.xml"
MIN_NEIGHBORS = 3
MIN_FACE_SIZE, PYRAMID_SCALE_FACTOR, SCORE_THRESH = 20, 0.8, 2.0
"""Defaults of the settings not given."""

# JPEG markers without a length: TEM, RST0-7, SOI (and EOI, which ends the search).
_STANDALONE = {0x01, *range(0xD0, 0xD9)}
# Start-of-frame markers (they hold the size); C4, C8 and CC are other segments.
_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class FaceDetectionArguments:
    """The image and rustface's optional detector settings."""

    image: bytes
    window_size: U32 | None = None
    slide_window_step_x: U32 | None = None
    slide_window_step_y: U32 | None = None
    min_face_size: U32 | None = None
    max_face_size: U32 | None = None
    pyramid_scale_factor: float | None = None
    score_thresh: float | None = None


def _check(arguments: FaceDetectionArguments) -> None:
    """rustface's limits (it panicked outside them)."""
    for name in ("window_size", "min_face_size"):
        value = getattr(arguments, name)
        if value is not None and value < 20:
            raise invalid_argument(f"{name} must be at least 20")
    for name in ("slide_window_step_x", "slide_window_step_y"):
        if getattr(arguments, name) == 0:
            raise invalid_argument(f"{name} must be positive")
    factor = arguments.pyramid_scale_factor
    if factor is not None and not 0.01 <= factor <= 0.99:
        raise invalid_argument("pyramid_scale_factor must be from 0.01 to 0.99")
    if arguments.score_thresh is not None and arguments.score_thresh <= 0:
        raise invalid_argument("score_thresh must be positive")


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG file's frame header, without decoding it."""
    if not data.startswith(b"\xff\xd8"):
        raise invalid_argument("image is not a JPEG file")
    position = 2
    while position + 4 <= len(data):
        marker = data[position + 1]
        if data[position] != 0xFF or marker == 0xD9:
            break
        if marker == 0xFF or marker in _STANDALONE:  # fill byte, or no length
            position += 1 if marker == 0xFF else 2
            continue
        if marker in _FRAMES and position + 9 <= len(data):
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            return int.from_bytes(data[position + 7 : position + 9], "big"), height
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    raise invalid_argument("image is not a JPEG file: no frame header")


def _faces(image: np.ndarray, arguments: FaceDetectionArguments) -> list[dict[str, object]]:
    """Detections with a score of at least ``score_thresh``, as rustface's JSON."""
    import cv2
    import cv2.data

    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if classifier.empty():
        raise TeaclaveError(Status.INTERNAL, f"the face model {CASCADE} is missing")
    smallest = arguments.min_face_size or MIN_FACE_SIZE
    largest = min(image.shape)
    if arguments.max_face_size is not None:
        largest = min(largest, arguments.max_face_size)
    if largest < smallest:
        return []
    boxes, _, scores = classifier.detectMultiScale3(
        image,
        scaleFactor=1 / (arguments.pyramid_scale_factor or PYRAMID_SCALE_FACTOR),
        minNeighbors=MIN_NEIGHBORS,
        minSize=(smallest, smallest),
        maxSize=(largest, largest),
        outputRejectLevels=True,
    )
    threshold = arguments.score_thresh or SCORE_THRESH
    return [
        {"bbox": {"x": x, "y": y, "width": width, "height": height}, "score": score}
        for (x, y, width, height), score in zip(
            np.reshape(boxes, (-1, 4)).tolist(), np.ravel(scores).tolist(), strict=True
        )
        if score >= threshold
    ]


def face_detection(arguments: FaceDetectionArguments, runtime: Runtime) -> str:
    """The faces found in ``image``, as a JSON array."""
    import cv2

    _check(arguments)
    if len(arguments.image) > MAX_IMAGE_BYTES:
        raise invalid_argument(f"image is larger than {MAX_IMAGE_BYTES} bytes")
    width, height = jpeg_size(arguments.image)
    if width * height > MAX_IMAGE_PIXELS:
        raise invalid_argument(f"image has more than {MAX_IMAGE_PIXELS} pixels")
    image = cv2.imdecode(np.frombuffer(arguments.image, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        raise invalid_argument("image cannot be decoded")
    return json.dumps(_faces(image, arguments), separators=(",", ":"))


BUILTIN = Builtin("builtin-face-detection", FaceDetectionArguments, face_detection)
