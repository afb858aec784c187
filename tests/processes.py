"""Reading the process tree from /proc: children, parents, and whether a process ended."""

from __future__ import annotations

from pathlib import Path


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


def has_read(pid: int) -> bool:
    """Whether process ``pid`` read anything since it was forked (True if it is gone).

    A zygote's spare task process has not: it waits for its envelope.
    """
    try:
        return not Path(f"/proc/{pid}/io").read_text().startswith("rchar: 0\n")
    except OSError:
        return True
