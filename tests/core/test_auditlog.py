"""The audit chain: valid logs verify; every edit, drop, move or forgery is named."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teaclave.core import auditlog
from teaclave.core.auditlog import (
    AuditEntry,
    Checkpoint,
    CheckpointSigner,
    Head,
    LogFormatError,
    Record,
    audit_user,
    is_about,
    parse_line,
    pinned,
    verify_chain,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_identity() -> tuple[bytes, bytes]:
    """A P-256 key and a self-signed certificate for it (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "management")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


KEY, CERT = make_identity()
OTHER_KEY, OTHER_CERT = make_identity()
SIGNER = CheckpointSigner(KEY, CERT)
TRUST = pinned([CERT])


def entries(n: int, first: int = 1) -> list[AuditEntry]:
    return [
        AuditEntry(1000 + i, bytes(15) + b"\1", audit_user("alice", "FunctionOwner"), f"m{i}", True)
        for i in range(first, first + n)
    ]


def build(n: int = 10, every: int = 5) -> tuple[list[Record], list[Checkpoint]]:
    """``n`` records with a checkpoint every ``every`` entries."""
    head, records, checkpoints = Head(), [], []
    for start in range(0, n, every):
        head, more = auditlog.append(head, entries(min(every, n - start), start + 1))
        records += more
        checkpoints.append(SIGNER.sign(head.seq, head.hash, 2000 + head.seq))
    return records, checkpoints


def problem(records: list[Record], checkpoints: list[Checkpoint]) -> str | None:
    return verify_chain(records, checkpoints, TRUST).problem


def rehashed(records: list[Record]) -> list[Record]:
    """``records`` with every hash and link recomputed (what a careful forger does)."""
    head, out = Head(), []
    for record in records:
        head, [made] = auditlog.append(Head(record.seq - 1, head.hash), [record.entry])
        out.append(made)
    return out


def test_a_valid_log_verifies() -> None:
    records, checkpoints = build()
    report = verify_chain(records, checkpoints, TRUST)
    assert report.valid
    assert (report.entries, report.checkpoints, report.signed_through) == (10, 2, 10)
    assert report.summary() == "valid: 10 entries, 2 checkpoints"


def test_unsigned_entries_are_reported() -> None:
    records, checkpoints = build(12)
    report = verify_chain(records, checkpoints[:2], TRUST)
    assert report.valid
    assert report.summary().endswith("entries 11-12 are not covered by a checkpoint yet")


def test_an_empty_log_verifies() -> None:
    assert verify_chain([], [], TRUST).valid


def test_a_modified_entry_is_named() -> None:
    records, checkpoints = build()
    records[3] = dataclasses.replace(
        records[3], entry=dataclasses.replace(records[3].entry, result=False)
    )
    assert problem(records, checkpoints) == "entry 4 was modified"


def test_a_modified_and_rehashed_entry_is_named() -> None:
    records, checkpoints = build()
    forged = dataclasses.replace(records[3].entry, message="nothing happened")
    records[3] = auditlog.append(Head(3, records[2].hash), [forged])[1][0]
    assert (
        problem(records, checkpoints) == "entry 4 was modified (entry 5 links to a different one)"
    )


def test_a_rewritten_chain_fails_its_checkpoint() -> None:
    records, checkpoints = build()
    records[3] = dataclasses.replace(
        records[3], entry=dataclasses.replace(records[3].entry, user="")
    )
    assert (
        problem(rehashed(records), checkpoints)
        == "checkpoint at 5 does not match the chain (an entry in 1-5 was rewritten)"
    )
    records, checkpoints = build()
    records[7] = dataclasses.replace(records[7], entry=entries(1, 99)[0])
    assert (
        problem(rehashed(records), checkpoints)
        == "checkpoint at 10 does not match the chain (an entry in 6-10 was rewritten)"
    )


@pytest.mark.parametrize(
    ("dropped", "message"),
    [
        ([3], "entry 4 is missing (dropped)"),
        ([3, 4, 5], "entries 4-6 are missing (dropped)"),
        ([0], "entry 1 is missing (dropped)"),
    ],
)
def test_dropped_entries_are_named(dropped: list[int], message: str) -> None:
    records, checkpoints = build()
    kept = [r for i, r in enumerate(records) if i not in dropped]
    assert problem(kept, checkpoints) == message


def test_reordered_entries_are_named() -> None:
    records, checkpoints = build()
    records[3], records[4] = records[4], records[3]
    assert problem(records, checkpoints) == "entry 4 is out of order (found after entry 5)"
    records, checkpoints = build()
    records.append(records.pop(1))
    assert problem(records, checkpoints) == "entry 2 is out of order (found after entry 3)"


def test_a_gap_before_a_moved_entry_is_a_drop() -> None:
    records, checkpoints = build()
    moved = [*records[:3], records[5], records[4], *records[6:]]  # 4 gone, 5 and 6 swapped
    assert problem(moved, checkpoints) == "entry 4 is missing (dropped)"


def test_an_inserted_entry_is_named() -> None:
    records, checkpoints = build()
    records.insert(4, records[3])
    assert problem(records, checkpoints) == (
        "entry 4 appears twice (an entry was inserted after entry 4)"
    )
    records, checkpoints = build()
    records.insert(2, dataclasses.replace(records[2], seq=0))
    assert problem(records, checkpoints) == "record 3 has the invalid sequence number 0"


def test_a_truncated_log_is_named() -> None:
    records, checkpoints = build()
    assert problem(records[:8], checkpoints) == (
        "the log ends at entry 8, before checkpoint 10 (truncated)"
    )


def test_forged_checkpoints_are_named() -> None:
    records, checkpoints = build()
    head = records[-1].hash
    other = CheckpointSigner(OTHER_KEY, CERT).sign(10, head, 3000)  # wrong key, trusted cert
    assert problem(records, [checkpoints[0], other]) == "checkpoint at 10: signature invalid"
    edited = dataclasses.replace(checkpoints[1], time=checkpoints[1].time + 1)
    assert problem(records, [checkpoints[0], edited]) == "checkpoint at 10: signature invalid"
    stranger = CheckpointSigner(OTHER_KEY, OTHER_CERT).sign(10, head, 3000)
    assert problem(records, [checkpoints[0], stranger]) == (
        "checkpoint at 10: signer not trusted: its key is not one of the trusted certificates"
    )
    garbled = dataclasses.replace(checkpoints[1], certificate=b"not a certificate")
    assert problem(records, [garbled]) == "checkpoint at 10: unreadable certificate"


def test_a_misplaced_checkpoint_does_not_match() -> None:
    records, _ = build()
    wrong = SIGNER.sign(5, records[5].hash, 3000)
    assert problem(records, [wrong]) == (
        "checkpoint at 5 does not match the chain (an entry in 1-5 was rewritten)"
    )


def test_lines_round_trip() -> None:
    records, checkpoints = build()
    for item in [*records, *checkpoints]:
        line = (
            auditlog.record_json(item)
            if isinstance(item, Record)
            else auditlog.checkpoint_json(item)
        )
        assert parse_line(line) == item
    odd = dataclasses.replace(records[0], entry=dataclasses.replace(records[0].entry, ip=b""))
    assert parse_line(auditlog.record_json(odd)) == odd


@pytest.mark.parametrize(
    "line",
    [
        "",
        "[]",
        '{"kind": "other"}',
        '{"kind": "entry", "seq": 1}',
        '{"kind":"checkpoint","seq":1,"head":"00","time":1,"certificate":"","signature":""}',
        '{"kind":"checkpoint","kind":"entry"}',
    ],
)
def test_bad_lines_are_refused(line: str) -> None:
    with pytest.raises(LogFormatError):
        parse_line(line)


@pytest.mark.parametrize(
    ("user", "user_id", "expected"),
    [
        (audit_user("alice", "DataOwner-x"), "alice", True),
        (audit_user("alice", "PlatformAdmin"), "alice", True),
        (audit_user("alice", "Bogus"), "alice", True),
        (audit_user("alice", 'DataOwner-a") }, x'), "alice", True),
        (audit_user("alice", "DataOwner-x"), "ali", False),
        (audit_user("alice, role: FunctionOwner }", "FunctionOwner"), "alice", False),
        (audit_user('alice, role: DataOwner("q") }', "FunctionOwner"), "alice", False),
        ("", "", False),
        (audit_user("alice", "DataOwner-x")[:-1], "alice", False),
    ],
)
def test_entries_about_a_user(user: str, user_id: str, expected: bool) -> None:
    assert is_about(user, user_id) is expected


# --- any edit of a fully checkpointed log is detected ---------------------------------------

RECORDS, CHECKPOINTS = build(12, 4)
Edit = Callable[[list[Record], list[Checkpoint]], None]


def _entry_edits(draw: st.DrawFn, entry: AuditEntry) -> AuditEntry:
    field = draw(st.sampled_from(["microsecond", "ip", "user", "message", "result"]))
    value: object
    if field == "microsecond":
        value = draw(st.integers(-(2**63), 2**63 - 1).filter(lambda v: v != entry.microsecond))
    elif field == "ip":
        value = draw(st.binary(min_size=16, max_size=16).filter(lambda v: v != entry.ip))
    elif field == "result":
        value = not entry.result
    else:
        value = draw(st.text(max_size=20).filter(lambda v: v != getattr(entry, field)))
    return dataclasses.replace(entry, **{field: value})


@st.composite
def edits(draw: st.DrawFn) -> Edit:
    """One tampering: change a record or checkpoint field, drop, move or duplicate a record."""
    kind = draw(st.sampled_from(["entry", "record", "drop", "swap", "move", "copy", "checkpoint"]))
    index = draw(st.integers(0, len(RECORDS) - 1))
    other = draw(st.integers(0, len(RECORDS) - 1).filter(lambda j: j != index))
    if kind == "entry":
        changed = _entry_edits(draw, RECORDS[index].entry)
        rehash = draw(st.booleans())

        def edit(rs: list[Record], cs: list[Checkpoint]) -> None:
            rs[index] = dataclasses.replace(rs[index], entry=changed)
            if rehash:
                rs[:] = rehashed(rs)

        return edit
    if kind == "record":
        field = draw(st.sampled_from(["seq", "prev", "hash"]))
        new = (
            draw(st.integers(0, 100).filter(lambda v: v != RECORDS[index].seq))
            if field == "seq"
            else draw(st.binary(min_size=32, max_size=32))
        )
        return lambda rs, cs: rs.__setitem__(index, dataclasses.replace(rs[index], **{field: new}))
    if kind == "drop":
        return lambda rs, cs: rs.__delitem__(index)
    if kind == "swap":

        def swap(rs: list[Record], cs: list[Checkpoint]) -> None:
            rs[index], rs[other] = rs[other], rs[index]

        return swap
    if kind == "move":
        return lambda rs, cs: rs.insert(other, rs.pop(index))
    if kind == "copy":
        return lambda rs, cs: rs.insert(other, rs[index])
    at = draw(st.integers(0, len(CHECKPOINTS) - 1))
    field = draw(st.sampled_from(["seq", "head", "time", "certificate", "signature"]))
    current = getattr(CHECKPOINTS[at], field)
    if field in ("seq", "time"):
        new_value: object = draw(st.integers(0, 2**63 - 1).filter(lambda v: v != current))
    elif field == "certificate":
        new_value = OTHER_CERT
    else:
        new_value = draw(st.binary(min_size=1, max_size=72).filter(lambda v: v != current))
    return lambda rs, cs: cs.__setitem__(at, dataclasses.replace(cs[at], **{field: new_value}))


@FUZZ
@given(edits())
def test_any_edit_is_detected(edit: Edit) -> None:
    records, checkpoints = list(RECORDS), list(CHECKPOINTS)
    edit(records, checkpoints)
    if (records, checkpoints) == (RECORDS, CHECKPOINTS):
        return  # e.g. a record moved to where it was
    assert not verify_chain(records, checkpoints, TRUST).valid
