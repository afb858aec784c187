"""Log lines as JSON objects, with the trace and span ids of the span current when logged."""

from __future__ import annotations

import json
import logging

from teaclave.observability import tracing


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, service, logger, message, trace ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        trace_id, span_id = tracing.ids()
        line: dict[str, str] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if trace_id:
            line |= {"trace_id": trace_id, "span_id": span_id}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def wrap(service: str, line: str) -> str:
    """A line of ``service``'s output as a JSON object: as it is if it is one, else wrapped."""
    if line.startswith("{"):
        try:
            if isinstance(json.loads(line), dict):
                return line
        except ValueError:
            pass
    return json.dumps({"service": service, "message": line}, ensure_ascii=False)
