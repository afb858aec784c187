"""The storage service's metrics: records by key namespace, among them the task queue."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from teaclave.storage import keys

NAMESPACES = {
    "user": keys.USER,
    "function": keys.FUNCTION,
    "input": keys.INPUT,
    "output": keys.OUTPUT,
    "task": keys.TASK,
    "audit_log": keys.AUDIT_LOG,
}
"""The namespaces counted, by label."""


class RecordCollector(Collector):
    """Counts records when scraped: ``count(prefix)`` reads keys only (an index range)."""

    def __init__(self, count: Callable[[str], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The current counts."""
        records = GaugeMetricFamily(
            "teaclave_storage_records", "Records stored, by key namespace.", labels=["namespace"]
        )
        for label, prefix in NAMESPACES.items():
            records.add_metric([label], self._count(prefix))
        yield records
        yield GaugeMetricFamily(
            "teaclave_queue_depth",
            "Staged tasks waiting for an executor (the queue in storage).",
            value=self._count(keys.STAGED),
        )
