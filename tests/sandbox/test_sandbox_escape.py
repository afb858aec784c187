"""The sandbox against the escape corpus, with every layer and with each layer switched off."""

from __future__ import annotations

import os
import resource
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from sandbox_corpus import CORPUS, ESCAPED_EXIT, MARKER, Attempt, Context

from teaclave.executor.sandbox import (
    EXIT_MEMORY,
    Layers,
    Limits,
    SandboxError,
    SandboxOutcome,
    spawn,
)

SMALL = Limits(cpu_secs=1, wall_secs=2, memory_bytes=256 << 20)
ALL_LAYERS = Layers()
LAYER_NAMES = [f.name for f in fields(Layers)]


@dataclass(frozen=True)
class Result:
    escaped: bool
    detail: str
    outcome: SandboxOutcome


def run_attempt(attempt: Attempt, ctx: Context, layers: Layers = ALL_LAYERS) -> Result:
    """Run one attempt as the target of a fresh sandbox."""
    ours, theirs = socket.socketpair()
    with ours:

        def target(channel: socket.socket) -> int:
            try:
                escaped = attempt.run(ctx)
            except BaseException as error:
                channel.sendall(b"S" + repr(error).encode()[:300])
                return 0
            channel.sendall(b"E" if escaped else b"S(no effect)")
            return 0

        process = spawn(target, theirs, SMALL, layers)
        theirs.close()
        outcome = process.wait()
        ours.setblocking(False)
        try:
            report = ours.recv(4096)
        except BlockingIOError:
            report = b""
    escaped = report.startswith(b"E") or outcome.exit_code == ESCAPED_EXIT
    return Result(escaped, report[1:].decode(errors="replace"), outcome)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    root = tmp_path_factory.mktemp("sandbox")
    data_dir, other, scratch, public = (root / n for n in ("data", "other", "scratch", "tmp"))
    for directory in (data_dir, other, scratch, public):
        directory.mkdir()
    os.chmod(scratch, 0o700)
    os.chmod(public, 0o777 | stat.S_ISVTX)
    (data_dir / "platform.key").write_text(MARKER)
    (other / "output.txt").write_text(MARKER)
    with (
        socket.socket() as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_UNIX) as unix,
    ):
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        abstract = f"\0teaclave-sandbox-{uuid.uuid4().hex}".encode()
        unix.bind(abstract)
        unix.listen()
        yield Context(
            spawner=os.getpid(),
            data_dir=data_dir,
            other_task=other / "output.txt",
            scratch=scratch,
            public_tmp=public,
            tcp_port=tcp.getsockname()[1],
            udp_port=udp.getsockname()[1],
            abstract_unix=abstract,
        )


def assert_nothing_planted(ctx: Context) -> None:
    for directory in (ctx.data_dir, ctx.scratch, ctx.public_tmp):
        planted = sorted(p.name for p in directory.iterdir() if p.name.startswith("planted"))
        assert planted == [], f"{directory} now holds {planted}"


def _say_ok(channel: socket.socket) -> int:
    channel.sendall(b"ok")
    return 0


def _ready_then_sleep(channel: socket.socket) -> int:
    channel.sendall(b"r")
    time.sleep(60)
    return 0


def assert_sandbox_works(ctx: Context) -> None:
    """A harmless target still runs normally (the previous attempt left nothing behind)."""
    ours, theirs = socket.socketpair()
    with ours:
        process = spawn(_say_ok, theirs, SMALL)
        theirs.close()
        assert process.wait() == SandboxOutcome(0, None, None)
        assert ours.recv(2) == b"ok"


# -- the corpus with every layer --------------------------------------------------------------


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30
    assert len({a.name for a in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("attempt", CORPUS, ids=lambda a: a.name)
def test_attempt_fails_safely(
    attempt: Attempt, ctx: Context, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_attempt(attempt, ctx)
    assert not result.escaped, f"{attempt.name} escaped ({result.outcome})"
    assert_nothing_planted(ctx)
    out, err = capfd.readouterr()
    assert len(out) + len(err) < 1024, "the sandbox's output reached the platform's"
    assert_sandbox_works(ctx)


# -- each layer off alone ---------------------------------------------------------------------


def _layer_off_cases() -> list[tuple[str, Attempt]]:
    return [(layer, a) for layer in LAYER_NAMES for a in CORPUS if a.stopped_by - {layer}]


@pytest.mark.parametrize(
    ("layer", "attempt"), _layer_off_cases(), ids=lambda v: v if isinstance(v, str) else v.name
)
def test_attempt_fails_with_one_layer_off(layer: str, attempt: Attempt, ctx: Context) -> None:
    result = run_attempt(attempt, ctx, Layers(**{layer: False}))
    assert not result.escaped, f"{attempt.name} escaped without {layer} ({result.outcome})"
    assert_nothing_planted(ctx)


def test_each_layer_alone_stops_what_it_claims(ctx: Context) -> None:
    """The expectations are honest: each claimed layer, alone, stops the attempt."""
    failures = []
    for layer in LAYER_NAMES:
        only = Layers(**{name: name == layer for name in LAYER_NAMES})
        for attempt in CORPUS:
            claimed = layer in attempt.stopped_by and attempt.name not in RESOURCE_ATTEMPTS
            if claimed and run_attempt(attempt, ctx, only).escaped:
                failures.append(f"{attempt.name} escaped {layer} alone")
            for p in (ctx.public_tmp / "planted", ctx.public_tmp / "planted-dir"):
                if p.is_dir():
                    p.rmdir()
                elif p.exists():
                    p.unlink()
    assert failures == []


RESOURCE_ATTEMPTS = {"fork_bomb", "infinite_loop", "memory_bomb", "deep_recursion"}


# -- limits -----------------------------------------------------------------------------------


def _spawn_and_wait(target_code: str) -> tuple[SandboxOutcome, float]:
    ours, theirs = socket.socketpair()
    with ours:

        def target(channel: socket.socket) -> int:
            exec(target_code, {})
            return 0

        started = time.monotonic()
        process = spawn(target, theirs, SMALL)
        theirs.close()
        return process.wait(), time.monotonic() - started


def test_cpu_bomb_hits_the_cpu_limit(ctx: Context) -> None:
    outcome, elapsed = _spawn_and_wait("while True: pass")
    assert outcome.limit == "CPU time limit (1 s)"
    assert elapsed < 2 * SMALL.cpu_secs
    assert_sandbox_works(ctx)


def test_memory_bomb_hits_the_memory_limit(ctx: Context) -> None:
    outcome, _ = _spawn_and_wait("x = bytearray(300 << 20)")
    assert outcome == SandboxOutcome(EXIT_MEMORY, None, "memory limit (256 MiB)")
    assert_sandbox_works(ctx)


def test_memory_below_the_limit_is_usable(ctx: Context) -> None:
    outcome, _ = _spawn_and_wait("x = bytearray(200 << 20); x[-1] = 1")
    assert outcome == SandboxOutcome(0, None, None)


def test_sleep_hits_the_wall_time_limit(ctx: Context) -> None:
    outcome, elapsed = _spawn_and_wait("import time; time.sleep(60)")
    assert outcome.limit == "wall time limit (2 s)"
    assert elapsed < 2 * SMALL.wall_secs
    assert_sandbox_works(ctx)


def test_threads_up_to_the_limit_work() -> None:
    code = (
        "import threading\n"
        "ts = [threading.Thread(target=lambda: None) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
    )
    assert _spawn_and_wait(code)[0] == SandboxOutcome(0, None, None)


def test_kill_ends_everything_in_the_sandbox() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        process = spawn(_ready_then_sleep, theirs, SMALL)
        theirs.close()
        assert ours.recv(1) == b"r"
        process.kill()
        outcome = process.wait()
    assert outcome.signal == 9
    assert outcome.limit is None


def test_exceptions_and_exit_codes_stay_in_the_sandbox() -> None:
    def fails(channel: socket.socket) -> int:
        raise RuntimeError("boom")

    ours, theirs = socket.socketpair()
    with ours:
        process = spawn(fails, theirs, SMALL)
        theirs.close()
        assert process.wait().exit_code == 250


def test_descriptors_and_environment_are_not_inherited(tmp_path: Path) -> None:
    code = (
        "import os, stat\n"
        "null = os.stat('/dev/null').st_rdev\n"
        "assert all(os.fstat(fd).st_rdev == null for fd in (0, 1, 2))\n"
        "assert stat.S_ISSOCK(os.fstat(3).st_mode)\n"
        "for fd in range(4, 1024):\n"
        "    try:\n"
        "        os.fstat(fd)\n"
        "    except OSError:\n"
        "        continue\n"
        "    raise AssertionError(fd)\n"
        "assert os.environ == {}\n"
    )
    with open(tmp_path / "held", "w"):
        os.environ[MARKER] = "1"
        try:
            outcome, _ = _spawn_and_wait(code)
        finally:
            del os.environ[MARKER]
    assert outcome == SandboxOutcome(0, None, None)


def test_spawn_refuses_a_threaded_caller() -> None:
    stop = threading.Event()
    ours, theirs = socket.socketpair()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.raises(SandboxError, match="single-threaded"):
            spawn(lambda channel: 0, ours, SMALL)
    finally:
        ours.close()
        theirs.close()
        stop.set()
        thread.join()


def test_rlimits_do_not_leak_into_the_spawner() -> None:
    before = resource.getrlimit(resource.RLIMIT_CPU)
    _spawn_and_wait("pass")
    assert resource.getrlimit(resource.RLIMIT_CPU) == before
