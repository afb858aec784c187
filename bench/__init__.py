"""Benchmarks of the running platform (``make bench``)."""
