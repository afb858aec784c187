"""A small HTTP file server (``teaclave file serve``): GET and PUT of files below one directory.

The counterpart of the reference's test server (§9.4): ``GET /a/b`` answers the
regular file ``DIR/a/b`` (no directory listings); ``PUT /a/b`` with a
``Content-Length`` body creates ``DIR/a/b`` atomically (the parent directory
must exist), answers 200, and 409 if the file exists. Path components may not
be empty, start with ``.`` or leave ``DIR`` through symlinks. One log line
per request (logger ``teaclave.transport.file_server``).
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_log = logging.getLogger(__name__)
_CHUNK = 1 << 20


class FileServer(ThreadingHTTPServer):
    """Serve ``root`` on ``host:port`` (port 0: any free port); ``serve_forever`` runs it."""

    daemon_threads = True

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"{root} is not a directory")
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:6789``."""
        host, port = self.socket.getsockname()[:2]
        shown = f"[{host}]" if self.address_family == socket.AF_INET6 else host
        return f"http://{shown}:{port}"

    def local_path(self, request_path: str) -> str | None:
        """The path below the root that ``request_path`` names, or None if it names none."""
        path = urlsplit(request_path).path
        if not path.startswith("/"):
            return None
        names = unquote(path).split("/")[1:]
        if any(not name or name.startswith(".") or "\0" in name for name in names):
            return None
        target = os.path.join(self.root, *names)
        real_parent = os.path.realpath(os.path.dirname(target))
        if os.path.commonpath((real_parent, self.root)) != self.root:
            return None
        return target


class _Handler(BaseHTTPRequestHandler):
    server: FileServer
    protocol_version = "HTTP/1.1"
    server_version = "teaclave-file-server"

    def do_GET(self) -> None:
        target = self.server.local_path(self.path)
        if target is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with open(fd, "rb") as file:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(os.fstat(fd).st_size))
            self.end_headers()
            while chunk := file.read(_CHUNK):
                self.wfile.write(chunk)

    def do_PUT(self) -> None:
        target = self.server.local_path(self.path)
        length = self.headers.get("Content-Length", "")
        if "Transfer-Encoding" in self.headers or not length.isdigit():
            self.send_error(HTTPStatus.LENGTH_REQUIRED)
        elif target is None or not os.path.isdir(os.path.dirname(target)):
            self._receive(int(length), lambda _: None)  # so that the client sees the answer
            self.send_error(HTTPStatus.NOT_FOUND)
        else:
            self._store(target, int(length))

    def _receive(self, length: int, write: Callable[[bytes], object]) -> int:
        """Pass ``length`` bytes of the body to ``write``; how many were missing."""
        while length and (chunk := self.rfile.read(min(length, _CHUNK))):
            write(chunk)
            length -= len(chunk)
        return length

    def _store(self, target: str, length: int) -> None:
        """Receive the body into a temporary file, then link it in place (never replacing).

        The body is read even when the file exists, so the client sees the 409.
        """
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".upload-")
        try:
            with open(fd, "wb") as file:
                missing = self._receive(length, file.write)
            if not missing:
                os.link(temporary, target)
            status = HTTPStatus.BAD_REQUEST if missing else HTTPStatus.OK
        except FileExistsError:
            status = HTTPStatus.CONFLICT
        finally:
            os.unlink(temporary)
        if status is HTTPStatus.OK:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_error(status)

    def log_message(self, format: str, *args: Any) -> None:
        _log.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        """Errors are already in the request's one line (its status)."""
