"""Observability: Prometheus metrics, OpenTelemetry traces, JSON log lines.

Importing this package imports nothing else: a task process uses :mod:`.stages`
alone, without the cost of the metrics and tracing libraries.
"""
