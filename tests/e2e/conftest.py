"""Fixtures of the end-to-end tests (defined in e2e_platform)."""

from e2e_platform import platform

__all__ = ["platform"]
