"""Assurance tooling: supply-chain reports, and the I/O manifest's static and runtime checks."""
