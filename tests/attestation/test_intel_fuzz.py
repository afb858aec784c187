"""Fuzzing: garbage and mutated real quotes and event logs never crash or hang the parsers."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intel_vectors import INTEL_IDS, at, collateral, manifest, quote, read, root

from teaclave.attestation.appraisal import Appraisal
from teaclave.attestation.intel import (
    EventLogError,
    QuoteFormatError,
    parse_event_log,
    parse_quote,
    replay_rtmrs,
    verify_quote,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENTRIES = [manifest()[vid] for vid in INTEL_IDS]
EVENT_LOG = read(manifest()["go-tdx-guest/cos-113-ccel"]["event_log"])


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


def _sound(a: Appraisal) -> None:
    assert isinstance(a, Appraisal)
    assert "internal verifier error" not in a.reason
    assert a.valid or a.reason


@FAST
@given(st.binary(max_size=2048))
def test_garbage_is_rejected(data: bytes) -> None:
    entry = ENTRIES[0]
    a = verify_quote(data, collateral=collateral(entry), root=root(entry), now=at(entry))
    _sound(a)
    assert not a.valid
    with contextlib.suppress(QuoteFormatError):
        parse_quote(data)


@FAST
@given(
    st.sampled_from(range(len(ENTRIES))),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.none() | st.integers(0, 5006),
)
def test_mutated_quotes(index: int, edits: list[tuple[int, int]], cut: int | None) -> None:
    entry = ENTRIES[index]
    original = quote(entry)
    mutated = _mutate(original, edits, cut)
    a = verify_quote(mutated, collateral=collateral(entry), root=root(entry), now=at(entry))
    _sound(a)
    signed_len = len(parse_quote(original).signed)
    if mutated[:signed_len] != original[:signed_len]:
        assert not a.valid  # a changed header or body never verifies
    with contextlib.suppress(QuoteFormatError):
        parse_quote(mutated)


@FAST
@given(st.binary(max_size=4096))
def test_event_log_garbage(data: bytes) -> None:
    with contextlib.suppress(EventLogError):
        parse_event_log(data)


@FAST
@given(
    st.lists(st.tuples(st.integers(0, 18_200), st.integers(0, 255)), min_size=1, max_size=4),
    st.none() | st.integers(0, 18_200),
)
def test_mutated_event_log(edits: list[tuple[int, int]], cut: int | None) -> None:
    with contextlib.suppress(EventLogError):
        replay_rtmrs(_mutate(EVENT_LOG[:18_200], edits, cut))
