"""Fetch and put files named by URLs (reference §9.4), streamed in chunks.

* ``file://`` — only files below ``execution.file_roots`` (after resolving
  symlinks); an upload never overwrites an existing file.
* ``data:`` — read-only; ``data:[<mediatype>][;base64],<data>``.

Every file is limited to ``execution.max_file_bytes``. Other schemes are refused.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import stat
from collections.abc import Iterator
from urllib.parse import SplitResult, unquote, unquote_to_bytes, urlsplit

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError, invalid_argument, permission_denied
from teaclave.crypto.streams import Reader, chunks


class _Limited:
    """A reader that fails once more than ``limit`` bytes have come through."""

    def __init__(self, reader: Reader, limit: int) -> None:
        self._reader = reader
        self._left = limit

    def read(self, size: int = -1, /) -> bytes:
        data = self._reader.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise _too_large()
        return data


def _too_large() -> TeaclaveError:
    return TeaclaveError(Status.RESOURCE_EXHAUSTED, "file exceeds execution.max_file_bytes")


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError:
        raise invalid_argument("malformed URL") from None


def _scheme(url: str) -> str:
    scheme = _split(url).scheme.lower()
    if scheme not in ("file", "data"):
        raise invalid_argument(f"unsupported URL scheme {scheme!r}")
    return scheme


def _file_path(url: str) -> str:
    parts = _split(url)
    if parts.netloc not in ("", "localhost"):
        raise invalid_argument("file:// URLs must name a local file (no host)")
    if parts.query or parts.fragment:
        raise invalid_argument("file:// URLs take no query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/") or "\0" in path:
        raise invalid_argument("file:// URLs must hold an absolute path")
    return path


def _check_confined(real: str, config: ExecutionConfig, shown: str) -> None:
    if not config.file_roots:
        raise permission_denied("file:// URLs are disabled (execution.file_roots is empty)")
    for root in config.file_roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath((real, real_root)) == real_root:
            return
    raise permission_denied(f"{shown} is outside execution.file_roots")


def _check_fd_confined(fd: int, config: ExecutionConfig, shown: str) -> None:
    """Check the file actually opened (symlinks may have changed since it was resolved)."""
    _check_confined(os.readlink(f"/proc/self/fd/{fd}"), config, shown)


def _os_error(exc: OSError, shown: str) -> TeaclaveError:
    if isinstance(exc, FileNotFoundError):
        return TeaclaveError(Status.NOT_FOUND, f"{shown} does not exist")
    if isinstance(exc, FileExistsError):
        return TeaclaveError(Status.ALREADY_EXISTS, f"{shown} already exists")
    return TeaclaveError(Status.FAILED_PRECONDITION, f"cannot access {shown}: {exc.strerror}")


def _decode_data(url: str) -> bytes:
    header, comma, payload = url.partition(":")[2].partition(",")
    if not comma:
        raise invalid_argument("malformed data: URL (no comma)")
    if not header.lower().endswith(";base64"):
        return unquote_to_bytes(payload)
    try:
        return base64.b64decode(unquote(payload), validate=True)
    except binascii.Error:
        raise invalid_argument("data: URL holds invalid base64") from None


@contextlib.contextmanager
def _open_file(url: str, config: ExecutionConfig) -> Iterator[Reader]:
    path = _file_path(url)
    # Confinement first: whether files outside the roots exist is not for the caller to learn.
    _check_confined(os.path.realpath(path), config, path)
    try:
        # O_NONBLOCK: a FIFO must not block the open; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise _os_error(exc, path) from None
    with open(fd, "rb") as file:
        _check_fd_confined(fd, config, path)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise invalid_argument(f"{path} is not a regular file")
        if info.st_size > config.max_file_bytes:
            raise _too_large()
        yield _Limited(file, config.max_file_bytes)


@contextlib.contextmanager
def open_download(url: str, config: ExecutionConfig) -> Iterator[Reader]:
    """A reader of the file at ``url`` (at most ``max_file_bytes`` come through)."""
    if _scheme(url) == "file":
        with _open_file(url, config) as reader:
            yield reader
        return
    data = _decode_data(url)
    if len(data) > config.max_file_bytes:
        raise _too_large()
    yield io.BytesIO(data)


def upload(url: str, source: Reader, config: ExecutionConfig) -> None:
    """Write ``source`` to a new file at ``url``; nothing is left behind on failure."""
    if _scheme(url) == "data":
        raise invalid_argument("data: URLs are read-only")
    path = _file_path(url)
    parent, name = os.path.split(path)
    if name in ("", ".", ".."):
        raise invalid_argument(f"{path} does not name a file")
    _check_confined(os.path.realpath(parent), config, path)
    try:
        dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc, parent if isinstance(exc, FileNotFoundError) else path) from None
    try:
        _check_fd_confined(dir_fd, config, path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            raise _os_error(exc, path) from None
        try:
            with open(fd, "wb") as file:
                for chunk in chunks(_Limited(source, config.max_file_bytes)):
                    file.write(chunk)
        except BaseException as exc:
            os.unlink(name, dir_fd=dir_fd)
            if isinstance(exc, OSError):
                raise _os_error(exc, path) from None
            raise
    finally:
        os.close(dir_fd)


def discard(url: str, config: ExecutionConfig) -> None:
    """Remove a file this task uploaded to ``url`` (rolling back a failed task's outputs)."""
    path = _file_path(url)
    _check_confined(os.path.realpath(os.path.dirname(path)), config, path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
