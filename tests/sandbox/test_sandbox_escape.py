"""The sandbox against the escape corpus: with every layer, with each layer off, and without
any (the positive control: each attempt escapes when nothing stops it)."""

from __future__ import annotations

import json
import os
import resource
import socket
import stat
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from sandbox_corpus import (
    CORPUS,
    ESCAPED_EXIT,
    KEY_PREFIX,
    MARKER,
    Attempt,
    Context,
    allowed_roots,
    host_seeds,
    listeners,
    probe,
    readable,
)

from teaclave.executor.sandbox import (
    EXIT_MEMORY,
    Layers,
    Limits,
    SandboxError,
    SandboxOutcome,
    spawn,
    task_view,
)
from teaclave.services.storage import DB_FILE
from teaclave.storage.sealing import load_or_create_sealing_key
from teaclave.storage.sqlite import SqliteStore

SMALL = Limits(cpu_secs=1, wall_secs=2, memory_bytes=256 << 20)
PROBING = Limits(cpu_secs=60, wall_secs=120, memory_bytes=256 << 20)
"""Room for a long run: the probes, and attempts with no layer to stop them."""
ALL_LAYERS = Layers()
LAYER_NAMES = [f.name for f in fields(Layers)]
NO_LAYERS = Layers(**{name: False for name in LAYER_NAMES})
PLANTED_KEYS: list[bytes] = []
"""Where the positive control puts a file key, as a worker that had read its task would."""


@dataclass(frozen=True)
class Result:
    escaped: bool
    detail: str
    outcome: SandboxOutcome


def run_target(
    target: Callable[[], bytes], layers: Layers = ALL_LAYERS, limits: Limits = SMALL
) -> tuple[bytes, SandboxOutcome]:
    """What ``target`` sent from a fresh sandbox (b"" if nothing), and how the sandbox ended."""
    ours, theirs = socket.socketpair()
    with ours:

        def main(channel: socket.socket) -> int:
            channel.sendall(target())
            return 0

        process = spawn(main, theirs, limits, layers)
        theirs.close()
        outcome = process.wait()
        ours.setblocking(False)
        try:
            report = ours.recv(1 << 20)
        except BlockingIOError:
            report = b""
    return report, outcome


def run_attempt(
    attempt: Attempt,
    ctx: Context,
    layers: Layers = ALL_LAYERS,
    *,
    key: bool = False,
    limits: Limits = SMALL,
) -> Result:
    """Run one attempt as the target of a fresh sandbox; it escaped only if it succeeded.

    ``key``: with a file key in this process's memory as the sandbox forks, as a worker
    that had read its task would have: in a frame's locals (frames_find_key's aim) and
    in a container (gc_find_key's).
    """
    if key:
        runtime_key = KEY_PREFIX + os.urandom(8)
        PLANTED_KEYS.append(runtime_key)
    try:
        return _run_attempt(attempt, ctx, layers, limits)
    finally:
        PLANTED_KEYS.clear()


def _run_attempt(attempt: Attempt, ctx: Context, layers: Layers, limits: Limits) -> Result:

    def target() -> bytes:
        try:
            return b"E" if attempt.run(ctx) else b"N(no effect)"
        except BaseException as error:  # the attempt failed: say how, for the test's message
            return b"F" + repr(error).encode()[:300]

    report, outcome = run_target(target, layers, limits)
    escaped = report.startswith(b"E") or outcome.exit_code == ESCAPED_EXIT
    return Result(escaped, report[1:].decode(errors="replace"), outcome)


def _device() -> str:
    return next(d for d in ("/dev/kvm", "/dev/console") if os.path.exists(d))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    """A platform's files as the platform lays them out, and listeners on the host."""
    root = tmp_path_factory.mktemp("sandbox")
    start = root / "start"  # where the platform was started, holding its data directory
    data_dir = start / "teaclave-data"
    SqliteStore(data_dir / DB_FILE, load_or_create_sealing_key(data_dir)).close()
    other, scratch, public = (root / n for n in ("other", "scratch", "tmp"))
    for directory in (other, scratch, public):
        directory.mkdir()
    os.chmod(scratch, 0o700)
    os.chmod(public, 0o777 | stat.S_ISVTX)
    (other / "output.txt").write_text(MARKER)
    stdlib = sysconfig.get_path("stdlib")
    with listeners() as (tcp_port, udp_port, abstract):
        yield Context(
            spawner=os.getpid(),
            data_dir=str(data_dir),
            sealing_key=str(data_dir / "simulation" / "sealing.key"),
            database=str(data_dir / DB_FILE),
            other_task=str(other / "output.txt"),
            scratch=str(scratch),
            public_tmp=str(public),
            start_dir=str(start),
            import_dirs=tuple(p for p in sys.path if os.path.isdir(p) and not p.startswith(stdlib)),
            hidden_dir=os.path.join(stdlib, "site-packages"),
            other_package=str(Path(sys.modules["pytest"].__file__ or "").resolve()),
            device=_device(),
            tcp_port=tcp_port,
            udp_port=udp_port,
            abstract_unix=abstract,
        )


def remove_planted(ctx: Context) -> list[str]:
    """Remove what an attempt planted; the names it planted."""
    planted = []
    for directory in (ctx.data_dir, ctx.scratch, ctx.public_tmp):
        for path in Path(directory).iterdir():
            if path.name.startswith("planted"):
                planted.append(str(path))
                path.rmdir() if path.is_dir() else path.unlink()
    return planted


def _say_ok() -> bytes:
    return b"ok"


def assert_sandbox_works() -> None:
    """A harmless target still runs normally (the previous attempt left nothing behind)."""
    assert run_target(_say_ok) == (b"ok", SandboxOutcome(0, None, None))


# -- the corpus with every layer --------------------------------------------------------------


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 50
    assert len({a.name for a in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("attempt", CORPUS, ids=lambda a: a.name)
def test_attempt_fails_safely(
    attempt: Attempt, ctx: Context, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_attempt(attempt, ctx)
    assert not result.escaped, f"{attempt.name} escaped ({result.outcome})"
    assert remove_planted(ctx) == []
    out, err = capfd.readouterr()
    assert len(out) + len(err) < 1024, "the sandbox's output reached the platform's"
    assert_sandbox_works()


# -- the positive control: nothing stops an attempt -------------------------------------------


@pytest.mark.parametrize("attempt", CORPUS, ids=lambda a: a.name)
def test_attempt_escapes_without_the_sandbox(attempt: Attempt, ctx: Context) -> None:
    """Each attempt works when no layer is on: a broken attempt cannot pass as stopped."""
    if attempt.control is not None:
        pytest.skip(f"cannot escape even unconfined: {attempt.control}")
    missing = HOST_LACKS.get(attempt.name)
    if missing is not None and missing[0](ctx):
        pytest.skip(f"cannot escape here: {missing[1]}")
    result = run_attempt(attempt, ctx, NO_LAYERS, key=True, limits=PROBING)  # time to succeed
    remove_planted(ctx)
    assert result.escaped, f"{attempt.name} did not escape unconfined: {result.detail}"


HOST_LACKS: dict[str, tuple[Callable[[Context], bool], str]] = {
    "read_init_environ": (
        lambda ctx: not readable("/proc/1/environ"),
        "this host lets no process, root included, read /proc/1/environ",
    ),
    "list_interpreter_site_packages": (
        lambda ctx: not os.path.isdir(ctx.hidden_dir),
        "this interpreter has no site-packages in its standard library",
    ),
}
"""Attempts whose aim this host does not offer (checked from the test process, as root)."""


def test_every_control_exemption_is_of_an_attempt_no_layer_claims() -> None:
    """Only attempts that something always on defeats are exempt from the control."""
    exempt = [a for a in CORPUS if a.control is not None]
    assert [a.name for a in exempt if "always" not in a.stopped_by] == []
    assert len(exempt) <= 4


# -- each layer off alone ---------------------------------------------------------------------


def _layer_off_cases() -> list[tuple[str, Attempt]]:
    return [(layer, a) for layer in LAYER_NAMES for a in CORPUS if a.stopped_by - {layer}]


@pytest.mark.parametrize(
    ("layer", "attempt"), _layer_off_cases(), ids=lambda v: v if isinstance(v, str) else v.name
)
def test_attempt_fails_with_one_layer_off(layer: str, attempt: Attempt, ctx: Context) -> None:
    result = run_attempt(attempt, ctx, Layers(**{layer: False}))
    planted = remove_planted(ctx)
    assert not result.escaped, f"{attempt.name} escaped without {layer} ({result.outcome})"
    assert planted == []


RESOURCE_ATTEMPTS = {"fork_bomb", "infinite_loop", "memory_bomb", "deep_recursion"}


def test_each_layer_alone_stops_what_it_claims(ctx: Context) -> None:
    """The expectations are honest: each claimed layer, alone, stops the attempt, even with
    a key in the spawner's memory for the introspection attempts to find."""
    failures = []
    for layer in LAYER_NAMES:
        only = Layers(**{name: name == layer for name in LAYER_NAMES})
        for attempt in CORPUS:
            claimed = layer in attempt.stopped_by and attempt.name not in RESOURCE_ATTEMPTS
            if claimed and run_attempt(attempt, ctx, only, key=True).escaped:
                failures.append(f"{attempt.name} escaped {layer} alone")
            remove_planted(ctx)
    assert failures == []


# -- what a task can read ---------------------------------------------------------------------


def seeds(ctx: Context) -> list[str]:
    """Where the probe looks: the host, the platform's files, the view's paths."""
    return host_seeds([*ctx.paths(), *task_view().readable])


def test_a_task_reads_only_the_interpreter_and_allowed_packages(ctx: Context) -> None:
    allowed, hidden = allowed_roots()
    places = seeds(ctx)

    def target() -> bytes:
        return json.dumps(probe(places, allowed, hidden)).encode()

    report, outcome = run_target(target, limits=PROBING)
    assert outcome == SandboxOutcome(0, None, None)
    found = json.loads(report)
    assert (found["outside"], found["examples"]) == (0, [])
    assert found["readable"] > 100  # the standard library at least: the probe works


def test_the_probe_finds_what_an_unconfined_task_reads(ctx: Context) -> None:
    """The positive control of the test above."""
    allowed, hidden = allowed_roots()
    secrets = ["/etc/shadow", ctx.sealing_key, ctx.database]

    def target() -> bytes:
        everything = probe(seeds(ctx), allowed, hidden, limit=20_000)
        return json.dumps([everything["outside"], probe(secrets, allowed, hidden)]).encode()

    report, _ = run_target(target, NO_LAYERS, PROBING)
    outside, found = json.loads(report)
    assert outside > 1000
    assert found["examples"] == sorted(secrets)


# -- limits -----------------------------------------------------------------------------------


def _spawn_and_wait(target_code: str) -> SandboxOutcome:
    ours, theirs = socket.socketpair()
    with ours:

        def target(channel: socket.socket) -> int:
            exec(target_code, {})
            return 0

        process = spawn(target, theirs, SMALL)
        theirs.close()
        return process.wait()


def test_cpu_bomb_hits_the_cpu_limit() -> None:
    assert _spawn_and_wait("while True: pass").limit == "CPU time limit (1 s)"
    assert_sandbox_works()


def test_memory_bomb_hits_the_memory_limit() -> None:
    outcome = _spawn_and_wait("x = bytearray(300 << 20)")
    assert outcome == SandboxOutcome(EXIT_MEMORY, None, "memory limit (256 MiB)")
    assert_sandbox_works()


def test_memory_below_the_limit_is_usable() -> None:
    outcome = _spawn_and_wait("x = bytearray(200 << 20); x[-1] = 1")
    assert outcome == SandboxOutcome(0, None, None)


def test_sleep_hits_the_wall_time_limit() -> None:
    outcome = _spawn_and_wait("import time; time.sleep(60)")
    assert outcome == SandboxOutcome(None, 9, "wall time limit (2 s)")
    assert_sandbox_works()


def test_the_wall_clock_starts_again_when_the_task_does() -> None:
    """A caller that stages files first restarts the clock: the target gets its full time."""

    def sleeps(channel: socket.socket) -> int:
        channel.recv(1)  # the task arrives
        time.sleep(1.0)
        return 0

    ours, theirs = socket.socketpair()
    with ours:
        process = spawn(sleeps, theirs, SMALL)  # 2 s of wall time
        theirs.close()
        time.sleep(1.5)  # staging: without a new start, 0.5 s would be left
        process.start_clock()
        ours.sendall(b"g")
        assert process.wait() == SandboxOutcome(0, None, None)


def test_threads_up_to_the_limit_work() -> None:
    code = (
        "import threading\n"
        "ts = [threading.Thread(target=lambda: None) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
    )
    assert _spawn_and_wait(code) == SandboxOutcome(0, None, None)


def test_kill_ends_everything_in_the_sandbox() -> None:
    def ready_then_sleep(channel: socket.socket) -> int:
        channel.sendall(b"r")
        time.sleep(60)
        return 0

    ours, theirs = socket.socketpair()
    with ours:
        process = spawn(ready_then_sleep, theirs, SMALL)
        theirs.close()
        assert ours.recv(1) == b"r"
        process.kill()
        outcome = process.wait()
    assert outcome == SandboxOutcome(None, 9, None)


def test_exceptions_and_exit_codes_stay_in_the_sandbox() -> None:
    def fails(channel: socket.socket) -> int:
        raise RuntimeError("boom")

    ours, theirs = socket.socketpair()
    with ours:
        process = spawn(fails, theirs, SMALL)
        theirs.close()
        assert process.wait().exit_code == 250


def test_descriptors_and_environment_are_not_inherited(tmp_path: Path) -> None:
    null = os.stat("/dev/null").st_rdev  # the sandbox has no /dev: compare with the host's
    code = (
        "import os, stat\n"
        f"assert all(os.fstat(fd).st_rdev == {null} for fd in (0, 1, 2))\n"
        "assert stat.S_ISSOCK(os.fstat(3).st_mode)\n"
        "for fd in range(4, 1024):\n"
        "    try:\n"
        "        os.fstat(fd)\n"
        "    except OSError:\n"
        "        continue\n"
        "    raise AssertionError(fd)\n"
        "assert os.environ == {}\n"
        "assert os.getcwd() == '/'\n"
    )
    with open(tmp_path / "held", "w"):
        os.environ[MARKER] = "1"
        try:
            outcome = _spawn_and_wait(code)
        finally:
            del os.environ[MARKER]
    assert outcome == SandboxOutcome(0, None, None)


def test_the_task_has_no_capability_and_its_own_uid() -> None:
    def identity() -> bytes:
        with open("/proc/self/status") as file:
            status = dict(line.split(":\t", 1) for line in file.read().splitlines())
        return json.dumps([os.getuid(), os.getgid(), os.getgroups(), status]).encode()

    only_rlimits = Layers(namespaces=False, landlock=False, audit_hook=False)  # /proc to read
    report, outcome = run_target(identity, only_rlimits)
    uid, gid, groups, status = json.loads(report)
    assert outcome == SandboxOutcome(0, None, None)
    assert uid == gid >= 200_000
    assert groups == []
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[name], 16) == 0, name
    assert status["NoNewPrivs"].strip() == "1"


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
