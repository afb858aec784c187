"""Stage timings of a task process, reported to its parent (no tracing library here).

A task process (:mod:`teaclave.executor.worker`) records its stages with
:func:`stage` inside :func:`recording`; outside it, :func:`stage` costs nothing.
The report is JSON: a list of ``[name, parent index (-1: none), start ns, end ns,
error type ('' if none), attributes]`` with stages in the order they began,
after the time the process began. Names and attributes carry no secret:
no URL, no key, no data, no failure message.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_STAGES = 256
"""The most stages a report carries (the rest are dropped)."""

Value = str | int | float | bool


@dataclass
class Stage:
    """One timed stage of a task."""

    name: str
    parent: int
    start: int
    end: int = 0
    error: str = ""
    attributes: dict[str, Value] = field(default_factory=dict)


@dataclass
class Report:
    """When the process began, and its stages in the order they began."""

    began: int
    stages: list[Stage]

    def encode(self) -> bytes:
        """The report as JSON."""
        rows = [[s.name, s.parent, s.start, s.end, s.error, s.attributes] for s in self.stages]
        return json.dumps({"began": self.began, "stages": rows}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Report:
        """The report in ``data``; ValueError if it is malformed."""
        try:
            raw = json.loads(data)
            stages = [
                Stage(str(name), int(parent), int(start), int(end), str(error), dict(attributes))
                for name, parent, start, end, error, attributes in raw["stages"][:MAX_STAGES]
            ]
            report = cls(int(raw["began"]), stages)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed stage report: {exc}") from None
        for index, item in enumerate(report.stages):
            if not -1 <= item.parent < index:
                raise ValueError("malformed stage report: a stage's parent must come before it")
            if not all(isinstance(v, Value) for v in item.attributes.values()):
                raise ValueError("malformed stage report: attribute values must be scalars")
        return report


@dataclass
class _Recorder:
    report: Report
    open: list[int] = field(default_factory=list)


_recorder: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "stage_recorder", default=None
)


@contextlib.contextmanager
def recording() -> Iterator[Report]:
    """Record the stages begun within the block into the report it gives."""
    recorder = _Recorder(Report(time.time_ns(), []))
    token = _recorder.set(recorder)
    try:
        yield recorder.report
    finally:
        _recorder.reset(token)


@contextlib.contextmanager
def stage(name: str, **attributes: Value) -> Iterator[None]:
    """Time the block as stage ``name`` (nested in the stage around it), if recording."""
    recorder = _recorder.get()
    stages = recorder.report.stages if recorder else []
    if recorder is None or len(stages) >= MAX_STAGES:
        yield
        return
    index = len(stages)
    item = Stage(
        name, recorder.open[-1] if recorder.open else -1, time.time_ns(), 0, "", attributes
    )
    stages.append(item)
    recorder.open.append(index)
    try:
        yield
    except BaseException as exc:
        item.error = type(exc).__name__
        raise
    finally:
        recorder.open.pop()
        item.end = time.time_ns()
