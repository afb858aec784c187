"""Local URLs: ``file://`` (below the file roots), ``fusion:`` (the platform's store), ``data:``.

Files are opened relative to a directory descriptor with ``O_NOFOLLOW`` and
created with ``O_EXCL``: an upload never overwrites and never follows a link,
and a failed upload removes the file it created.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import stat
from collections.abc import Iterator
from urllib.parse import unquote, unquote_to_bytes

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError, invalid_argument, permission_denied
from teaclave.crypto.streams import Reader, Writer
from teaclave.transport.limits import LimitedReader, LimitedWriter, too_large
from teaclave.transport.policy import split_url

FUSION_PREFIX = "/TEACLAVE_FUSION_BASE/"
_FUSION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


def _os_error(exc: OSError, shown: str) -> TeaclaveError:
    if isinstance(exc, FileNotFoundError):
        return TeaclaveError(Status.NOT_FOUND, f"{shown} does not exist")
    if isinstance(exc, FileExistsError):
        return TeaclaveError(Status.ALREADY_EXISTS, f"{shown} already exists")
    return TeaclaveError(Status.FAILED_PRECONDITION, f"cannot access {shown}: {exc.strerror}")


# file://


def file_path(url: str) -> str:
    """The absolute local path a ``file://`` URL names."""
    parts = split_url(url)
    if parts.netloc not in ("", "localhost"):
        raise invalid_argument("file:// URLs must name a local file (no host)")
    if parts.query or parts.fragment:
        raise invalid_argument("file:// URLs take no query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/") or "\0" in path:
        raise invalid_argument("file:// URLs must hold an absolute path")
    return path


def check_confined(real: str, config: ExecutionConfig, shown: str) -> None:
    """``real`` (a resolved path) must lie below one of ``execution.file_roots``."""
    if not config.file_roots:
        raise permission_denied("file:// URLs are disabled (execution.file_roots is empty)")
    for root in config.file_roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath((real, real_root)) == real_root:
            return
    raise permission_denied(f"{shown} is outside execution.file_roots")


def _check_fd_confined(fd: int, config: ExecutionConfig, shown: str) -> None:
    """Check the file actually opened (symlinks may have changed since it was resolved)."""
    check_confined(os.readlink(f"/proc/self/fd/{fd}"), config, shown)


def check_file(url: str, config: ExecutionConfig, *, write: bool) -> str:
    """The path of a ``file://`` URL the policy allows (for writing: its directory must be)."""
    path = file_path(url)
    if write:
        parent, name = os.path.split(path)
        if name in ("", ".", ".."):
            raise invalid_argument(f"{path} does not name a file")
        check_confined(os.path.realpath(parent), config, path)
    else:
        # Confinement first: whether files outside the roots exist is not for the caller to learn.
        check_confined(os.path.realpath(path), config, path)
    return path


# fusion:


def fusion_name(url: str, config: ExecutionConfig) -> str:
    """The file name in ``execution.fusion_dir`` of a ``fusion:///TEACLAVE_FUSION_BASE/<name>``."""
    parts = split_url(url)
    if parts.netloc or parts.query or parts.fragment or not parts.path.startswith(FUSION_PREFIX):
        raise invalid_argument(f"fusion URLs must be fusion://{FUSION_PREFIX}<name>")
    name = parts.path.removeprefix(FUSION_PREFIX)
    if not _FUSION_NAME.fullmatch(name):
        raise invalid_argument(
            "fusion URLs must name one file: letters, digits, '.', '_', '-' (no leading '.')"
        )
    if not config.fusion_dir:
        raise TeaclaveError(Status.FAILED_PRECONDITION, "execution.fusion_dir is not set")
    return name


def _fusion_dir(config: ExecutionConfig) -> int:
    """A descriptor of the fusion directory (created private if missing)."""
    os.makedirs(config.fusion_dir, mode=0o700, exist_ok=True)
    return os.open(config.fusion_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


# Opening and creating


@contextlib.contextmanager
def _read_regular(fd: int, shown: str, config: ExecutionConfig) -> Iterator[Reader]:
    """A limited reader of the regular file open at ``fd`` (closed at the end)."""
    with open(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise invalid_argument(f"{shown} is not a regular file")
        if info.st_size > config.max_file_bytes:
            raise too_large(config.max_file_bytes)
        yield LimitedReader(file, config.max_file_bytes)


# O_NONBLOCK: a FIFO must not block the open; it is refused as not a regular file.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def _create(
    dir_fd: int, name: str, mode: int, shown: str, config: ExecutionConfig
) -> Iterator[Writer]:
    """A limited writer of the new file ``name`` in ``dir_fd``; removed if the block fails."""
    try:
        fd = os.open(name, _CREATE_FLAGS, mode, dir_fd=dir_fd)
    except OSError as exc:
        raise _os_error(exc, shown) from None
    try:
        with open(fd, "wb") as file:
            yield LimitedWriter(file, config.max_file_bytes)
    except BaseException as exc:
        os.unlink(name, dir_fd=dir_fd)
        if isinstance(exc, OSError):
            raise _os_error(exc, shown) from None
        raise


@contextlib.contextmanager
def open_file(url: str, config: ExecutionConfig) -> Iterator[Reader]:
    """Read a ``file://`` URL."""
    path = check_file(url, config, write=False)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise _os_error(exc, path) from None
    try:
        _check_fd_confined(fd, config, path)
    except BaseException:
        os.close(fd)
        raise
    with _read_regular(fd, path, config) as reader:
        yield reader


@contextlib.contextmanager
def create_file(url: str, config: ExecutionConfig) -> Iterator[Writer]:
    """Write a new file at a ``file://`` URL."""
    path = check_file(url, config, write=True)
    parent, name = os.path.split(path)
    try:
        dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc, parent if isinstance(exc, FileNotFoundError) else path) from None
    try:
        _check_fd_confined(dir_fd, config, path)
        with _create(dir_fd, name, 0o644, path, config) as writer:
            yield writer
    finally:
        os.close(dir_fd)


def remove_file(url: str, config: ExecutionConfig) -> None:
    """Remove the file at a ``file://`` URL (gone already is fine)."""
    path = check_file(url, config, write=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def open_fusion(url: str, config: ExecutionConfig) -> Iterator[Reader]:
    """Read a fusion file."""
    name = fusion_name(url, config)
    dir_fd = _fusion_dir(config)
    try:
        fd = os.open(name, _READ_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        raise _os_error(exc, f"fusion file {name}") from None
    finally:
        os.close(dir_fd)
    with _read_regular(fd, f"fusion file {name}", config) as reader:
        yield reader


@contextlib.contextmanager
def create_fusion(url: str, config: ExecutionConfig) -> Iterator[Writer]:
    """Write a new fusion file (private to the platform: mode 0600)."""
    name = fusion_name(url, config)
    dir_fd = _fusion_dir(config)
    try:
        with _create(dir_fd, name, 0o600, f"fusion file {name}", config) as writer:
            yield writer
    finally:
        os.close(dir_fd)


def remove_fusion(url: str, config: ExecutionConfig) -> None:
    """Remove a fusion file (gone already is fine)."""
    name = fusion_name(url, config)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(config.fusion_dir, name))


# data:


def decode_data(url: str, config: ExecutionConfig) -> bytes:
    """The bytes of a ``data:[<mediatype>][;base64],<data>`` URL."""
    header, comma, payload = url.partition(":")[2].partition(",")
    if not comma:
        raise invalid_argument("malformed data: URL (no comma)")
    if not header.lower().endswith(";base64"):
        data = unquote_to_bytes(payload)
    else:
        try:
            data = base64.b64decode(unquote(payload), validate=True)
        except binascii.Error:
            raise invalid_argument("data: URL holds invalid base64") from None
    if len(data) > config.max_file_bytes:
        raise too_large(config.max_file_bytes)
    return data
