"""The upload handshake between a task process's worker and the execution service.

An output's key and iv encrypt one plaintext, ever. So before the first byte of
an output leaves, the worker asks the execution service, which asks the scheduler
to commit that the output's upload began (``StartUpload``); only a grant lets it go.

After the envelope (:mod:`teaclave.executor.worker`), both directions carry
frames ``kind (1 byte) | payload length (4 bytes, big endian) | payload``:

* worker → service, on the task process's stdout: ``U`` + an output's name
  (UTF-8), asking to upload it; ``T`` + the worker's stage timings
  (:mod:`teaclave.observability.stages`), once, just before the result; finally
  ``R`` + the serialized ``TaskResult``;
* service → worker, on the task process's stdin: one answer per ``U``, in order:
  ``Y`` (granted) or ``N`` + why not (UTF-8).

A worker that gets no answer (its stdin ended) or a malformed one uploads nothing.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import IO

from teaclave.core.errors import Status, TeaclaveError

_FRAME = struct.Struct(">cI")
MAX_FRAME_BYTES = 64 << 20
"""The largest payload either side accepts (a result carries the summary and log)."""
UPLOAD, RESULT, GRANTED, REFUSED, STAGES = b"U", b"R", b"Y", b"N", b"T"

StartUpload = Callable[[str], None]
"""Called with an output's name before anything of it is uploaded; raises
:class:`TeaclaveError` (FAILED_PRECONDITION) if the upload may not begin."""


def write_frame(stream: IO[bytes], kind: bytes, payload: bytes = b"") -> None:
    """Write one frame and flush it."""
    stream.write(_FRAME.pack(kind, len(payload)) + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> tuple[bytes, bytes] | None:
    """The next ``(kind, payload)`` on a buffered ``stream``; None at its end.

    ValueError if the frame is cut short or too large.
    """
    head = stream.read(_FRAME.size)
    if not head:
        return None
    if len(head) < _FRAME.size:
        raise ValueError("truncated frame")
    kind, size = _FRAME.unpack(head)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes is too large")
    payload = stream.read(size)
    if len(payload) < size:
        raise ValueError("truncated frame")
    return kind, payload


def _refused(reason: str) -> TeaclaveError:
    return TeaclaveError(Status.FAILED_PRECONDITION, reason)


class ServiceGate:
    """The worker's side (a :data:`StartUpload`): asks the service, waits for its answer."""

    def __init__(self, requests: IO[bytes], answers: IO[bytes]) -> None:
        self._requests = requests
        self._answers = answers

    def __call__(self, name: str) -> None:
        """Return once the service granted the upload of output ``name``; raise otherwise."""
        write_frame(self._requests, UPLOAD, name.encode())
        try:
            answer = read_frame(self._answers)
        except ValueError:
            answer = None
        if answer is None:
            raise _refused("cannot start the upload: no answer from the execution service")
        kind, reason = answer
        if kind == GRANTED:
            return
        if kind == REFUSED:
            raise _refused(reason.decode(errors="replace"))
        raise _refused("cannot start the upload: malformed answer from the execution service")


def serve(
    to_worker: IO[bytes],
    from_worker: IO[bytes],
    envelope: bytes,
    start_upload: Callable[[str], str],
    on_stages: Callable[[bytes], None] = lambda _: None,
) -> bytes | None:
    """The service's side: send ``envelope``, then answer each upload request with
    ``start_upload(name)`` ('' grants, else the reason) until the worker's result;
    hand its stage timings to ``on_stages``.

    Returns the result's bytes (b"" if the worker ended without one), or None if
    the worker broke the protocol (it may still be running: kill it). Closes
    ``to_worker``.
    """
    try:
        with contextlib.suppress(BrokenPipeError):  # a dead worker: its exit code tells
            to_worker.write(envelope)
            to_worker.flush()
        while True:
            try:
                frame = read_frame(from_worker)
                if frame is None:
                    return b""
                kind, payload = frame
                if kind == RESULT:
                    return payload
                if kind == STAGES:
                    on_stages(payload)
                    continue
                if kind != UPLOAD:
                    return None
                reason = start_upload(payload.decode())
            except ValueError:  # a malformed frame or name
                return None
            with contextlib.suppress(BrokenPipeError):
                write_frame(to_worker, REFUSED if reason else GRANTED, reason.encode())
    finally:
        with contextlib.suppress(BrokenPipeError):
            to_worker.close()
