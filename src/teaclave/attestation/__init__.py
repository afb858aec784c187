"""Attestation evidence: formats, pure verifiers and the code measurement."""
