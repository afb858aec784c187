"""``http(s)://`` and ``s3://`` through fsspec (aiohttp, s3fs), streamed, behind the URL policy.

Every connection is made by a socket factory (:class:`Gate`) that applies the
address rule to the address actually dialled, so DNS rebinding after
:func:`~teaclave.transport.policy.check_endpoint` gains nothing. Redirects are
not followed: a 3xx answer is an error naming the ``Location`` host.

* http download: one streamed GET, any 2xx.
* http upload: the bytes are spooled (ciphertext only) to a temporary file, then
  sent in ONE ``PUT`` with ``Content-Type: application/x-binary`` and
  ``Content-Length``; only ``200`` is success. Nothing is sent if the block fails.
* s3: a multipart upload committed with ``If-None-Match: *`` (no overwrite) only
  when the block succeeds, else aborted. Credentials come from the environment.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import s3fs
from fsspec.asyn import sync
from fsspec.implementations.http import (
    HTTPFileSystem,
    HTTPStreamFile,
)

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError, permission_denied
from teaclave.crypto.streams import Reader, Writer
from teaclave.transport.limits import LimitedReader, LimitedWriter, too_large
from teaclave.transport.policy import Clearance

_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
_S3_MIN_PART = 5 << 20
_UPLOAD_HEADERS = {"Content-Type": "application/x-binary"}
_HTTP_STATUSES = {
    401: Status.PERMISSION_DENIED,
    403: Status.PERMISSION_DENIED,
    404: Status.NOT_FOUND,
    409: Status.ALREADY_EXISTS,
}


class Gate:
    """The socket factory of one transfer: sockets only for addresses the policy allows."""

    def __init__(self, clearance: Clearance) -> None:
        self._clearance = clearance
        self.refusal: str | None = None

    def socket(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """A socket for ``addr_info`` (from getaddrinfo), if its address may be dialled."""
        family, kind, proto, _, address = addr_info
        refusal = self._clearance.refusal(str(address[0]))
        if refusal is not None:
            self.refusal = refusal
            raise ConnectionRefusedError(errno.ECONNREFUSED, refusal)
        return socket.socket(family, kind, proto)


class _Transfer:
    """One transfer's library calls, their failures turned into TeaclaveErrors naming it."""

    def __init__(self, gate: Gate, action: str) -> None:
        self._gate = gate
        self.action = action

    @contextlib.contextmanager
    def calls(self) -> Iterator[None]:
        """Translate the failures of the library calls inside."""
        try:
            yield
        except TeaclaveError:
            raise
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> TeaclaveError:
        action = self.action
        if self._gate.refusal is not None:
            return permission_denied(self._gate.refusal)
        if isinstance(exc, FileNotFoundError):
            return TeaclaveError(Status.NOT_FOUND, f"{action}: not found")
        if isinstance(exc, FileExistsError):
            return TeaclaveError(Status.ALREADY_EXISTS, f"{action}: already exists")
        if isinstance(exc, PermissionError):
            return permission_denied(f"{action}: access denied by the server")
        return TeaclaveError(
            Status.UNAVAILABLE, f"{action} failed: {type(exc).__name__}: {exc}"[:300]
        )


class _Stream:
    """A library file object whose reads and writes fail as TeaclaveErrors."""

    def __init__(self, file: Any, transfer: _Transfer) -> None:
        self._file = file
        self._transfer = transfer

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes."""
        with self._transfer.calls():
            data: bytes = self._file.read(size)
        return data

    def write(self, data: bytes, /) -> int:
        """Write all of ``data``."""
        with self._transfer.calls():
            self._file.write(data)
        return len(data)


def _status_check(
    action: str, accept: Callable[[int], bool]
) -> Callable[[aiohttp.ClientResponse], Awaitable[None]]:
    """An aiohttp ``raise_for_status`` hook: ``accept`` the status or fail precisely."""

    async def check(response: aiohttp.ClientResponse) -> None:
        status = response.status
        if accept(status):
            return
        if 300 <= status < 400:
            target = urlsplit(response.headers.get("Location", "")).netloc or "(none)"
            raise permission_denied(
                f"{action}: HTTP {status} redirect to {target} refused (redirects are not followed)"
            )
        code = _HTTP_STATUSES.get(status, Status.UNAVAILABLE)
        raise TeaclaveError(code, f"{action}: HTTP {status} {response.reason or ''}".rstrip())

    return check


@contextlib.contextmanager
def _http(gate: Gate) -> Iterator[HTTPFileSystem]:
    """An HTTP filesystem of its own whose connections all pass through ``gate``."""

    async def client(**kwargs: Any) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(socket_factory=gate.socket, use_dns_cache=False)
        return aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT, **kwargs)

    fs = HTTPFileSystem(get_client=client, skip_instance_cache=True, allow_redirects=False)
    try:
        yield fs
    finally:
        session = sync(fs.loop, fs.set_session)
        sync(fs.loop, session.close)


@contextlib.contextmanager
def http_download(url: str, clearance: Clearance, config: ExecutionConfig) -> Iterator[Reader]:
    """Stream the body of ``GET url`` (a 2xx answer)."""
    transfer = _Transfer(gate := Gate(clearance), f"GET {clearance.peer.origin}")
    with _http(gate) as fs:
        with transfer.calls():
            file = HTTPStreamFile(
                fs,
                url,
                loop=fs.loop,
                session=sync(fs.loop, fs.set_session),
                allow_redirects=False,
                raise_for_status=_status_check(transfer.action, lambda s: 200 <= s < 300),
            )
        with contextlib.closing(file):
            length = file.r.content_length
            if length is not None and length > config.max_file_bytes:
                raise too_large(config.max_file_bytes)
            yield LimitedReader(_Stream(file, transfer), config.max_file_bytes)


def _spool_dir(config: ExecutionConfig) -> str | None:
    if not config.work_dir:
        return None
    os.makedirs(config.work_dir, mode=0o700, exist_ok=True)
    return config.work_dir


@contextlib.contextmanager
def http_upload(url: str, clearance: Clearance, config: ExecutionConfig) -> Iterator[Writer]:
    """Collect the bytes, then ``PUT`` them in one request (success: exactly 200)."""
    transfer = _Transfer(gate := Gate(clearance), f"PUT {clearance.peer.origin}")
    with tempfile.SpooledTemporaryFile(config.chunk_bytes, dir=_spool_dir(config)) as spool:
        writer = LimitedWriter(_Stream(spool, transfer), config.max_file_bytes)
        yield writer
        spool.seek(0)
        with _http(gate) as fs, transfer.calls():
            fs.put_file(
                spool,
                url,
                method="put",
                chunk_size=config.chunk_bytes,
                headers={**_UPLOAD_HEADERS, "Content-Length": str(writer.written)},
                raise_for_status=_status_check(transfer.action, lambda s: s == 200),
            )


@contextlib.contextmanager
def _s3(gate: Gate, config: ExecutionConfig) -> Iterator[s3fs.S3FileSystem]:
    """An S3 filesystem of its own whose connections all pass through ``gate``."""
    fs = s3fs.S3FileSystem(
        endpoint_url=config.s3_endpoint_url or None,
        skip_instance_cache=True,
        use_listings_cache=False,
        config_kwargs={"connector_args": {"socket_factory": gate.socket}},
    )
    try:
        yield fs
    finally:
        client = sync(fs.loop, fs.set_session)
        sync(fs.loop, client.close)


@contextlib.contextmanager
def s3_download(url: str, clearance: Clearance, config: ExecutionConfig) -> Iterator[Reader]:
    """Stream an S3 object (ranged GETs of ``chunk_bytes``)."""
    transfer = _Transfer(gate := Gate(clearance), f"read {url}")
    with _s3(gate, config) as fs:
        with transfer.calls():
            file = fs.open(url, "rb", block_size=config.chunk_bytes, cache_type="readahead")
        with contextlib.closing(file):
            if file.size > config.max_file_bytes:
                raise too_large(config.max_file_bytes)
            yield LimitedReader(_Stream(file, transfer), config.max_file_bytes)


@contextlib.contextmanager
def s3_upload(url: str, clearance: Clearance, config: ExecutionConfig) -> Iterator[Writer]:
    """A multipart upload, committed (never over an existing object) only on success."""
    transfer = _Transfer(gate := Gate(clearance), f"write {url}")
    with _s3(gate, config) as fs:
        with transfer.calls():
            file = fs.open(
                url, "xb", block_size=max(_S3_MIN_PART, config.chunk_bytes), autocommit=False
            )
        try:
            yield LimitedWriter(_Stream(file, transfer), config.max_file_bytes)
            with transfer.calls():
                file.close()
                file.commit()
        except BaseException:
            with transfer.calls():
                try:
                    file.close()
                finally:
                    file.discard()
            raise


def s3_remove(url: str, clearance: Clearance, config: ExecutionConfig) -> None:
    """Delete an S3 object (gone already is fine)."""
    transfer = _Transfer(gate := Gate(clearance), f"delete {url}")
    with _s3(gate, config) as fs, transfer.calls():
        fs.rm_file(url)
