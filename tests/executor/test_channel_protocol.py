"""The channel's framing and its trusted end against a malicious sandbox."""

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from teaclave.executor.channel import protocol
from teaclave.executor.channel.client import ChannelFiles
from teaclave.executor.channel.protocol import ChannelClosed, Frame, ProtocolError
from teaclave.executor.channel.server import ChannelServer, FunctionFailed
from teaclave.executor.files import (
    INVALID_HANDLE,
    MAX_HANDLES,
    OPEN_FAILED,
    WRITE_FLAG,
    FileRefused,
)
from teaclave.executor.tasklog import CUT, MAX_ENTRY_BYTES, LogLimits, TaskLog
from teaclave.functions.runtime import MemoryRuntime


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    trusted, sandbox = socket.socketpair()
    with trusted, sandbox:
        yield trusted, sandbox


def raw(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">II", len(header), len(body)) + header + body


def serve(
    trusted: socket.socket,
    runtime: MemoryRuntime | None = None,
    log: TaskLog | None = None,
    **limits: int,
) -> bytes:
    runtime = runtime or MemoryRuntime({"in": b"line 1\nline 2\n"}, frozenset({"out"}))
    server = ChannelServer(
        trusted,
        runtime,
        max_file_bytes=limits.get("max_file_bytes", 1 << 20),
        max_summary_bytes=limits.get("max_summary_bytes", 100),
        log=log,
    )
    return server.serve()


def replies(sandbox: socket.socket, count: int) -> list[Frame]:
    return [protocol.receive(sandbox) for _ in range(count)]


def test_round_trip(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    protocol.send(a, "write", b"\x00body", handle=3)
    assert protocol.receive(b) == Frame({"op": "write", "handle": 3}, b"\x00body")
    protocol.send(a, "close", handle=3)
    assert protocol.receive(b).field("handle", int) == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (raw(b"\xff\xfe"), "frame header is not JSON"),
        (raw(b"{not json"), "frame header is not JSON"),
        (raw(b"[1, 2]"), "an object with a string 'op'"),
        (raw(b'{"op": 7}'), "an object with a string 'op'"),
        (struct.pack(">II", 0xFFFFFFFF, 0), "frame header too large"),
        (struct.pack(">II", 2, 0xFFFFFFFF) + b"{}", "frame body too large"),
        (raw(b'{"op":"result"}', b"x")[:-1], "channel closed in the middle of a frame"),
        (b"\x00\x00", "channel closed in the middle of a frame"),
    ],
)
def test_malformed_frames(
    pair: tuple[socket.socket, socket.socket], data: bytes, message: str
) -> None:
    trusted, sandbox = pair
    sandbox.sendall(data)
    sandbox.shutdown(socket.SHUT_WR)
    with pytest.raises(ProtocolError, match=message):
        serve(trusted)


def test_a_deeply_nested_header_is_a_protocol_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    trusted, sandbox = pair
    sandbox.sendall(raw(b"[" * protocol.MAX_HEADER))
    with pytest.raises(ProtocolError, match="frame header is not JSON"):
        serve(trusted)


def test_closed_between_frames(pair: tuple[socket.socket, socket.socket]) -> None:
    trusted, sandbox = pair
    sandbox.shutdown(socket.SHUT_WR)
    with pytest.raises(ChannelClosed):
        serve(trusted)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"op": "fork"}, "unknown op 'fork'"),
        ({"op": "read", "handle": True, "size": 1}, "'handle' must be a int"),
        ({"op": "read", "handle": "1", "size": 1}, "'handle' must be a int"),
        ({"op": "open", "name": "in"}, "'mode' must be a str"),
        ({"op": "open", "name": "in", "mode": "r"}, "unknown mode 'r'"),
        ({"op": "failure"}, "'error' must be a str"),
    ],
)
def test_ill_formed_requests(
    pair: tuple[socket.socket, socket.socket], header: dict[str, object], message: str
) -> None:
    trusted, sandbox = pair
    sandbox.sendall(raw(json.dumps(header).encode()))
    with pytest.raises(ProtocolError, match=message):
        serve(trusted)


def test_files_and_result(pair: tuple[socket.socket, socket.socket]) -> None:
    trusted, sandbox = pair
    runtime = MemoryRuntime({"in": b"line 1\nline 2\n"}, frozenset({"out"}))
    protocol.send(sandbox, "open", name="in", mode="rb")
    protocol.send(sandbox, "read", handle=1, size=7)
    protocol.send(sandbox, "read", handle=1, size=100)
    protocol.send(sandbox, "read", handle=1, size=100)
    protocol.send(sandbox, "open", name="out", mode="wb")
    protocol.send(sandbox, "write", b"written", handle=WRITE_FLAG | 2)
    protocol.send(sandbox, "close", handle=WRITE_FLAG | 2)
    protocol.send(sandbox, "result", b"done")
    assert serve(trusted, runtime) == b"done"
    answers = replies(sandbox, 7)
    assert [a.op for a in answers] == ["ok"] * 7
    assert answers[0].header["handle"] == 1
    assert [a.body for a in answers[1:4]] == [b"line 1\n", b"line 2\n", b""]
    assert runtime.output("out") == b"written"


def test_refused_requests_are_errors_the_function_sees(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    trusted, sandbox = pair
    protocol.send(sandbox, "open", name="nope", mode="rb")
    protocol.send(sandbox, "open", name="in", mode="wb")  # an input is not an output
    protocol.send(sandbox, "read", handle=1, size=1)  # never opened
    protocol.send(sandbox, "close", handle=99)
    protocol.send(sandbox, "open", name="out", mode="wb")
    protocol.send(sandbox, "read", handle=WRITE_FLAG | 1, size=1)  # a write handle
    protocol.send(sandbox, "write", b"12345", handle=WRITE_FLAG | 1)  # over max_file_bytes
    protocol.send(sandbox, "close", handle=WRITE_FLAG | 1)
    protocol.send(sandbox, "close", handle=WRITE_FLAG | 1)  # twice
    protocol.send(sandbox, "result")
    assert serve(trusted, max_file_bytes=4) == b""
    answers = [(a.op, a.header.get("message")) for a in replies(sandbox, 9)]
    assert answers == [
        ("error", OPEN_FAILED),
        ("error", OPEN_FAILED),
        ("error", INVALID_HANDLE),
        ("error", INVALID_HANDLE),
        ("ok", None),
        ("error", INVALID_HANDLE),
        ("error", "output exceeds execution.max_file_bytes (4)"),
        ("ok", None),
        ("error", INVALID_HANDLE),
    ]


@pytest.mark.parametrize("size", [-1, protocol.CHUNK + 1])
def test_read_sizes_are_bounded(pair: tuple[socket.socket, socket.socket], size: int) -> None:
    trusted, sandbox = pair
    protocol.send(sandbox, "open", name="in", mode="rb")
    protocol.send(sandbox, "read", handle=1, size=size)
    with pytest.raises(ProtocolError, match="size must be from 0 to"):
        serve(trusted)


def test_an_empty_read_checks_the_handle(pair: tuple[socket.socket, socket.socket]) -> None:
    trusted, sandbox = pair
    protocol.send(sandbox, "open", name="in", mode="rb")
    protocol.send(sandbox, "read", handle=1, size=0)
    protocol.send(sandbox, "read", handle=2, size=0)
    protocol.send(sandbox, "result", b"done")
    assert serve(trusted) == b"done"
    answers = replies(sandbox, 3)
    assert [(a.op, a.body) for a in answers] == [("ok", b""), ("ok", b""), ("error", b"")]
    assert answers[2].header["message"] == INVALID_HANDLE


def sandbox_side(
    sandbox: socket.socket, work: Callable[[ChannelFiles], bytes]
) -> tuple[threading.Thread, list[object]]:
    """Run ``work`` on the sandbox's end in a thread; what it returned or raised."""
    outcome: list[object] = []

    def run() -> None:
        files = ChannelFiles(sandbox)
        try:
            outcome.append(work(files))
        except Exception as exc:
            outcome.append(exc)
        files.report(b"")

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_the_sandbox_end_moves_large_writes_in_chunks(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    trusted, sandbox = pair
    data = bytes(range(256)) * ((2 * protocol.CHUNK + 100) // 256)

    def work(files: ChannelFiles) -> bytes:
        handle = files.open("out", writable=True)
        files.write(handle, data)
        files.close(handle)
        reader = files.open("in", writable=False)
        return files.read(reader, protocol.CHUNK + 5)  # capped at one chunk

    runtime = MemoryRuntime({"in": b"line 1\n"}, frozenset({"out"}))
    thread, outcome = sandbox_side(sandbox, work)
    serve(trusted, runtime, max_file_bytes=len(data))
    thread.join(10)
    assert outcome == [b"line 1\n"]
    assert runtime.output("out") == data


def test_a_write_too_large_is_refused_before_any_of_it_lands(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    trusted, sandbox = pair
    limit = protocol.CHUNK + 10

    def work(files: ChannelFiles) -> bytes:
        handle = files.open("out", writable=True)
        files.write(handle, b"x" * 10)
        try:
            files.write(handle, b"y" * (2 * protocol.CHUNK))
        finally:
            files.close(handle)
        return b"written"

    runtime = MemoryRuntime({}, frozenset({"out"}))
    thread, outcome = sandbox_side(sandbox, work)
    serve(trusted, runtime, max_file_bytes=limit)
    thread.join(10)
    assert [str(o) for o in outcome] == [f"output exceeds execution.max_file_bytes ({limit})"]
    assert isinstance(outcome[0], FileRefused)
    assert runtime.output("out") == b"x" * 10


def test_handles_are_limited(pair: tuple[socket.socket, socket.socket]) -> None:
    trusted, sandbox = pair

    def requests() -> None:
        for _ in range(MAX_HANDLES + 1):
            protocol.send(sandbox, "open", name="in", mode="rb")
        protocol.send(sandbox, "result")

    answers: list[Frame] = []
    # Requests and replies both outgrow the socket buffers: all three ends run at once.
    threads = [
        threading.Thread(target=requests),
        threading.Thread(target=lambda: answers.extend(replies(sandbox, MAX_HANDLES + 1))),
    ]
    for thread in threads:
        thread.start()
    serve(trusted)
    for thread in threads:
        thread.join(10)
    assert answers[MAX_HANDLES - 1].header == {"op": "ok", "handle": MAX_HANDLES}
    assert answers[MAX_HANDLES].header["message"] == "too many files opened (1023 per task)"


def test_failure_carries_the_traceback(pair: tuple[socket.socket, socket.socket]) -> None:
    trusted, sandbox = pair
    protocol.send(sandbox, "failure", b"Traceback ...", error="ValueError: bad")
    with pytest.raises(FunctionFailed) as failed:
        serve(trusted)
    assert (failed.value.error, failed.value.traceback) == ("ValueError: bad", "Traceback ...")


def test_summary_body_is_bounded(pair: tuple[socket.socket, socket.socket]) -> None:
    trusted, sandbox = pair
    protocol.send(sandbox, "result", b"x" * 101)  # one more than the limit: accepted, refused later
    assert serve(trusted, max_summary_bytes=protocol.CHUNK + 100) == b"x" * 101
    sandbox.sendall(struct.pack(">II", 15, protocol.CHUNK + 1) + b'{"op":"result"}')
    with pytest.raises(ProtocolError, match="frame body too large"):
        serve(trusted)


def test_the_log_comes_before_the_result_and_gets_no_reply(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    trusted, sandbox = pair
    guest = TaskLog(LogLimits(max_lines=2, max_bytes=100))
    for entry in ["printed", "logged", "one too many"]:
        guest.add(entry)
    ChannelFiles(sandbox).report(b"done", guest)
    log = TaskLog(LogLimits(max_lines=10, max_bytes=100))
    assert serve(trusted, log=log) == b"done"
    assert log.entries() == [
        "printed",
        "logged",
        "[teaclave] log truncated: 1 more entries not kept (at most 10 entries, 100 bytes)",
    ]
    sandbox.setblocking(False)
    with pytest.raises(BlockingIOError):  # no reply to any of it
        sandbox.recv(1)


def test_the_trusted_side_bounds_what_a_sandbox_sends(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    trusted, sandbox = pair
    protocol.send(sandbox, "log", b"y" * (2 * MAX_ENTRY_BYTES))
    protocol.send(sandbox, "log", b"not utf-8 \xff")
    for _ in range(5):
        protocol.send(sandbox, "log", b"more")
    protocol.send(sandbox, "result", b"")
    log = TaskLog(LogLimits(max_lines=3, max_bytes=1 << 20))
    serve(trusted, log=log)
    (cut, replaced, more, marker) = log.entries()
    assert (cut, replaced, more) == (
        "y" * (MAX_ENTRY_BYTES - len(CUT.encode())) + CUT,
        "not utf-8 \ufffd",
        "more",
    )
    assert marker.startswith("[teaclave] log truncated: 4 more entries not kept")


@pytest.mark.parametrize("op", ["log", "log_skipped"])
def test_log_frames_of_a_task_that_did_not_ask_break_the_protocol(
    pair: tuple[socket.socket, socket.socket], op: str
) -> None:
    trusted, sandbox = pair
    protocol.send(sandbox, op, b"secret", count=1)
    with pytest.raises(ProtocolError, match=f"'{op}' frame, but the task did not ask for its log"):
        serve(trusted)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "'count' must be a int"),
        ({"count": "3"}, "'count' must be a int"),
        ({"count": -1}, "'count' must not be negative"),
    ],
)
def test_an_ill_formed_skip_count_breaks_the_protocol(
    pair: tuple[socket.socket, socket.socket], fields: dict[str, object], message: str
) -> None:
    trusted, sandbox = pair
    protocol.send(sandbox, "log_skipped", **fields)
    with pytest.raises(ProtocolError, match=message):
        serve(trusted, log=TaskLog(LogLimits(max_lines=10, max_bytes=100)))


@pytest.mark.parametrize("dripped", [False, True], ids=["silent", "a byte at a time"])
def test_a_sandbox_cannot_keep_the_trusted_end_past_its_deadline(
    pair: tuple[socket.socket, socket.socket], dripped: bool
) -> None:
    """Silent, or sending its result so slowly that each read gets a byte: the wait for
    the function's next frame ends at the deadline (past it, the result would come
    whole, or the sandbox would close the channel)."""
    trusted, sandbox = pair
    stop = threading.Event()

    def sandbox_end() -> None:
        frame = raw(b'{"op":"result"}', b"late")  # 1.2 s of it, dripped
        for byte in frame if dripped else b"":
            if stop.wait(0.05):
                return
            sandbox.sendall(bytes([byte]))
        if not stop.wait(1.0):
            sandbox.shutdown(socket.SHUT_WR)

    sending = threading.Thread(target=sandbox_end)
    sending.start()
    server = ChannelServer(
        trusted, MemoryRuntime({}, frozenset()), max_file_bytes=1, max_summary_bytes=10
    )
    deadline = time.monotonic() + 0.3
    try:
        with pytest.raises(TimeoutError):
            server.serve(lambda: deadline - time.monotonic())
    finally:
        stop.set()
        sending.join()
