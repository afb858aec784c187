"""The sandboxed end of a Wasm task: runs the module, loaded before the fork, on the channel.

The module's env functions reach the task's files as requests over the channel, so the
process that runs untrusted code never holds a file key. wasmtime's bindings call native
code through ctypes: the sandbox lets those calls through its audit hook (``native_calls``).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from teaclave.core.errors import TeaclaveError
from teaclave.executor.channel.client import ChannelFiles, receive_task

if TYPE_CHECKING:
    from teaclave.executor.wasm.function import WasmFunction


def main(function: WasmFunction, channel: socket.socket) -> int:
    """The sandbox's target: wait for the go frame, run the module, report."""
    task, log = receive_task(channel)
    files = ChannelFiles(channel)
    try:
        summary = function.run(files, task["argv"], log)
    except TeaclaveError as exc:
        files.fail(exc.message)
    else:
        files.report(summary, log)
    return 0
