"""Teaclave: a confidential function-as-a-service platform."""

__version__ = "0.1.0"
