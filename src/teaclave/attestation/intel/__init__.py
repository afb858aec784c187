"""Intel DCAP (SGX and TDX quotes v3/v4/v5) verification in pure Python, with full collateral."""

from teaclave.attestation.intel.collateral import Collateral, CollateralError, SignedDocument
from teaclave.attestation.intel.eventlog import EventLogError, parse_event_log, replay_rtmrs
from teaclave.attestation.intel.quote import Quote, QuoteFormatError, parse_quote
from teaclave.attestation.intel.verify import NO_COLLATERAL, verify_quote

__all__ = [
    "NO_COLLATERAL",
    "Collateral",
    "CollateralError",
    "EventLogError",
    "Quote",
    "QuoteFormatError",
    "SignedDocument",
    "parse_event_log",
    "parse_quote",
    "replay_rtmrs",
    "verify_quote",
]
