"""Where the tests' data lives: ``tests/data`` (see each folder's PROVENANCE.md)."""

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = DATA / "teaclave"
"""Apache Teaclave's test fixtures (inputs, encrypted files, expected results)."""
PSI_DIR = FIXTURES / "functions" / "ordered_set_intersect"
VECTORS = DATA / "attestation"
"""Attestation evidence of public projects, with MANIFEST.json's expected verdicts and times."""
ADVISORIES = DATA / "advisories"
"""A small OSV snapshot written for the tests of the offline advisory audit."""
