"""Fetch and put files named by URLs (reference §9.4), streamed, behind the URL policy.

* ``file://`` — only files below ``execution.file_roots`` (after resolving
  symlinks); an upload never overwrites an existing file.
* ``data:`` — read-only; ``data:[<mediatype>][;base64],<data>``.
* ``fusion:///TEACLAVE_FUSION_BASE/<name>`` — ``<execution.fusion_dir>/<name>``,
  one plain file name; never overwritten.
* ``http(s)://`` — GET (2xx) / one PUT (exactly 200); redirects are not followed.
* ``s3://BUCKET/KEY`` — through ``execution.s3_endpoint_url`` (or AWS).

:func:`check_url` is the policy decision (:mod:`teaclave.transport.policy`),
made before any connection; every opener applies it first. Every file is
limited to ``execution.max_file_bytes``. An upload is committed only if its
block ends normally; otherwise nothing is left at the target.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

from teaclave.config import ExecutionConfig
from teaclave.crypto.streams import Reader, Writer
from teaclave.transport import local
from teaclave.transport.policy import Clearance, check_endpoint, endpoint, url_scheme

__all__ = ["check_url", "discard", "open_download", "open_upload", "upload"]

_log = logging.getLogger(__name__)
_REMOTE = ("http", "https", "s3")
"""Schemes served by :mod:`teaclave.transport.remote`, imported only when one is used:
aiohttp and s3fs take a quarter of a second to import, and most task processes
open no remote URL."""


def _check(url: str, config: ExecutionConfig, *, write: bool) -> tuple[str, Clearance | None]:
    """The URL's scheme and, for a remote URL, the policy's clearance of its endpoint."""
    scheme = url_scheme(url, config, write=write)
    if scheme == "file":
        local.check_file(url, config, write=write)
    elif scheme == "fusion":
        local.fusion_name(url, config)
    elif scheme in _REMOTE:
        return scheme, check_endpoint(endpoint(url, config), config)
    return scheme, None


def check_url(url: str, config: ExecutionConfig, *, write: bool = False) -> None:
    """Refuse ``url`` unless the URL policy allows reading it (or writing, with ``write``).

    PERMISSION_DENIED for a policy refusal, INVALID_ARGUMENT for a malformed URL.
    Host names are resolved; no connection is made.
    """
    _check(url, config, write=write)


@contextlib.contextmanager
def open_download(url: str, config: ExecutionConfig) -> Iterator[Reader]:
    """A reader of the file at ``url`` (at most ``max_file_bytes`` come through)."""
    scheme, clearance = _check(url, config, write=False)
    if scheme == "data":
        yield io.BytesIO(local.decode_data(url, config))
        return
    if clearance is not None:
        from teaclave.transport import remote  # imported on first use: see _REMOTE

        opener = remote.s3_download if scheme == "s3" else remote.http_download
        with opener(url, clearance, config) as reader:
            yield reader
        return
    with (local.open_file if scheme == "file" else local.open_fusion)(url, config) as reader:
        yield reader


@contextlib.contextmanager
def open_upload(url: str, config: ExecutionConfig) -> Iterator[Writer]:
    """A writer of a new file at ``url``, committed only if the block ends normally."""
    scheme, clearance = _check(url, config, write=True)
    if clearance is not None:
        from teaclave.transport import remote  # imported on first use: see _REMOTE

        opener = remote.s3_upload if scheme == "s3" else remote.http_upload
        with opener(url, clearance, config) as writer:
            yield writer
        return
    with (local.create_file if scheme == "file" else local.create_fusion)(url, config) as writer:
        yield writer


def upload(url: str, source: Reader, config: ExecutionConfig) -> None:
    """Write all of ``source`` to a new file at ``url``; nothing is left behind on failure."""
    with open_upload(url, config) as writer:
        while chunk := source.read(config.chunk_bytes):
            writer.write(chunk)


def discard(url: str, config: ExecutionConfig) -> None:
    """Remove a file this task uploaded to ``url`` (rolling back a failed task's outputs).

    ``http(s)`` has no delete in the file agent's protocol: the file stays, and a
    warning names the host.
    """
    scheme, clearance = _check(url, config, write=True)
    if scheme == "file":
        local.remove_file(url, config)
    elif scheme == "fusion":
        local.remove_fusion(url, config)
    elif scheme == "s3" and clearance is not None:
        from teaclave.transport import remote  # imported on first use: see _REMOTE

        remote.s3_remove(url, clearance, config)
    elif clearance is not None:
        _log.warning(
            "cannot remove an uploaded output at %s: HTTP outputs are not deleted",
            clearance.peer.origin,
        )
