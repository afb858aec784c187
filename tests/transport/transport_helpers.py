"""Helpers shared by the transport tests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import TypeVar

import pytest

from teaclave.core.errors import TeaclaveError

ServerT = TypeVar("ServerT", bound=ThreadingHTTPServer)


def failure(call: Callable[..., object], *args: object, **kwargs: object) -> TeaclaveError:
    """The TeaclaveError that ``call`` raises."""
    with pytest.raises(TeaclaveError) as info:
        call(*args, **kwargs)
    return info.value


@contextlib.contextmanager
def serve_in_thread(server: ServerT) -> Iterator[ServerT]:
    """Run ``server`` in a thread for the block."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
