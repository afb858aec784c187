"""Reading the process tree from /proc: children, parents, and whether a process ended."""

from __future__ import annotations

import fcntl
import os
import sys
import termios
from pathlib import Path

from teaclave.executor.worker import SPARE, TAKEN


def children(pid: int) -> list[int]:
    """The children of process ``pid`` (forked by any of its threads); none if it is gone."""
    found = []
    try:
        for thread in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (thread / "children").read_text().split()]
    except OSError:
        return []
    return found


def parent(pid: int) -> int:
    """The parent of process ``pid`` (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (it may be a zombie not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def is_spare(pid: int) -> bool:
    """Whether process ``pid`` is a zygote's spare task process, waiting for its task
    (its name says so, :data:`~teaclave.executor.worker.SPARE`)."""
    return _name(pid) == SPARE


def took_task(pid: int) -> bool:
    """Whether process ``pid`` is a task process whose task has begun to come."""
    return _name(pid) == TAKEN


def unread_input(pid: int) -> int:
    """Bytes written to the stdin (a pipe) of process ``pid`` that it has not read (0 if
    it is gone)."""
    try:
        pipe = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(pipe, termios.FIONREAD, bytes(4)), sys.byteorder)
    finally:
        os.close(pipe)


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().rstrip("\n")
    except OSError:
        return ""
