"""Who may dial whom (reference §1): the inbound allow-list of every internal endpoint."""

from __future__ import annotations

INBOUND: dict[str, frozenset[str]] = {
    "authentication": frozenset({"frontend"}),
    "management": frozenset({"frontend"}),
    "storage": frozenset({"authentication", "management", "scheduler"}),
    "access_control": frozenset({"frontend", "management"}),
    "scheduler": frozenset({"execution"}),
}
"""Internal endpoint name → the peer services allowed to call it."""

PUBLIC = ("authentication_api", "frontend_api")
"""Public endpoints: clients connect with server-side attestation only."""
