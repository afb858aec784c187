"""The audit log's tamper-evident format: a hash chain with signed checkpoints.

Each record holds a sequence number (1, 2, …), an entry, the previous record's
hash (32 zero bytes before the first) and its own hash::

    hash = SHA-256("teaclave-audit-record-v1\\0" ‖ seq (8 bytes, big-endian) ‖ prev ‖ entry)

where ``entry`` is the canonical JSON of the entry's fields (:func:`entry_bytes`:
sorted keys, no spaces, UTF-8, a 16-byte IP as compressed IPv6 text). Canonical JSON
rather than protobuf bytes, so the exported log is readable and what a reader
sees is exactly what is hashed. The sequence number is hashed, so a verifier
tells an edited entry (its hash no longer matches) from a dropped one (a gap in
the numbers) and a moved one (a number out of place).

A checkpoint signs ``(seq, head hash, time)`` with ECDSA P-256/SHA-256 by the
management service's attested key and carries that service's certificate, so
an offline verifier can check the signature and, separately, the evidence
binding the key (see :data:`Trust`). A checkpoint fixes every record up to its
sequence number; records after the last checkpoint are not yet signed.

Pure: no I/O, the JSON-lines encoding of the exported log included.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.core.roles import Role, RoleKind

RECORD_DOMAIN = b"teaclave-audit-record-v1\0"
CHECKPOINT_DOMAIN = b"teaclave-audit-checkpoint-v1\0"
GENESIS = bytes(32)
"""The ``prev`` of the first record."""

Trust = Callable[[bytes, int], str | None]
"""Whether a checkpoint's signer is trusted: ``(certificate PEM, checkpoint time in µs)`` →
None if so, else the reason it is not."""


class LogFormatError(ValueError):
    """A line of an exported log is not a record or a checkpoint."""


@dataclass(frozen=True)
class AuditEntry:
    """One audited call (the fields of ``teaclave_common_proto.Entry``)."""

    microsecond: int
    ip: bytes
    user: str
    message: str
    result: bool


@dataclass(frozen=True)
class Record:
    """An entry at its place in the chain."""

    seq: int
    entry: AuditEntry
    prev: bytes
    hash: bytes


@dataclass(frozen=True)
class Head:
    """The end of the chain (kept in storage with the last checkpoint's position and time)."""

    seq: int = 0
    hash: bytes = GENESIS
    checkpoint_seq: int = 0
    checkpoint_time: int = 0


@dataclass(frozen=True)
class Checkpoint:
    """A signature over the chain's head at ``seq``, made at ``time`` (µs since the epoch)."""

    seq: int
    head: bytes
    time: int
    certificate: bytes
    signature: bytes


@dataclass(frozen=True)
class Report:
    """The outcome of :func:`verify_chain`: the first problem found (None: valid)."""

    problem: str | None
    entries: int
    checkpoints: int
    signed_through: int
    """Every record up to this sequence number is covered by a valid checkpoint."""

    @property
    def valid(self) -> bool:
        """No problem was found."""
        return self.problem is None

    def summary(self) -> str:
        """One line for people."""
        if self.problem is not None:
            return f"INVALID: {self.problem}"
        text = f"valid: {self.entries} entries, {self.checkpoints} checkpoints"
        if self.signed_through < self.entries:
            unsigned = f"{self.signed_through + 1}-{self.entries}"
            text += f"; entries {unsigned} are not covered by a checkpoint yet"
        return text


# --- the chain -------------------------------------------------------------------------------


def entry_bytes(entry: AuditEntry) -> bytes:
    """The canonical encoding of ``entry`` that is hashed."""
    return _dumps(_entry_plain(entry))


def record_hash(seq: int, prev: bytes, entry: AuditEntry) -> bytes:
    """The hash of the record ``seq`` holding ``entry`` after ``prev``."""
    return hashlib.sha256(
        RECORD_DOMAIN + struct.pack(">Q", seq) + prev + entry_bytes(entry)
    ).digest()


def append(head: Head, entries: Iterable[AuditEntry]) -> tuple[Head, list[Record]]:
    """The records that put ``entries`` after ``head``, and the new head."""
    records = []
    seq, prev = head.seq, head.hash
    for entry in entries:
        seq += 1
        digest = record_hash(seq, prev, entry)
        records.append(Record(seq, entry, prev, digest))
        prev = digest
    return Head(seq, prev, head.checkpoint_seq, head.checkpoint_time), records


# --- checkpoints -----------------------------------------------------------------------------


def _signed_bytes(seq: int, head: bytes, time: int) -> bytes:
    return CHECKPOINT_DOMAIN + struct.pack(">Qq", seq, time) + head


class CheckpointSigner:
    """Signs checkpoints with a service's key (PEM), naming its certificate (PEM)."""

    def __init__(self, key_pem: bytes, certificate_pem: bytes) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("checkpoints are signed with a P-256 key")
        self._key = key
        self._certificate = certificate_pem

    def sign(self, seq: int, head: bytes, time: int) -> Checkpoint:
        """A checkpoint of the chain at ``seq`` (whose hash is ``head``), made at ``time``."""
        signature = self._key.sign(_signed_bytes(seq, head, time), ec.ECDSA(hashes.SHA256()))
        return Checkpoint(seq, head, time, self._certificate, signature)


def checkpoint_problem(checkpoint: Checkpoint) -> str | None:
    """Why ``checkpoint`` is not signed by its certificate's key (None: it is)."""
    where = f"checkpoint at {checkpoint.seq}"
    try:
        key = x509.load_pem_x509_certificate(checkpoint.certificate).public_key()
    except ValueError:
        return f"{where}: unreadable certificate"
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return f"{where}: certificate key is not ECDSA"
    try:
        key.verify(
            checkpoint.signature,
            _signed_bytes(checkpoint.seq, checkpoint.head, checkpoint.time),
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        return f"{where}: signature invalid"
    return None


def pinned(certificates: Iterable[bytes]) -> Trust:
    """Trust signers whose key is that of one of ``certificates`` (PEM)."""
    keys = {_public_key(pem) for pem in certificates}

    def trust(certificate: bytes, time: int) -> str | None:
        del time
        if _public_key(certificate) in keys:
            return None
        return "its key is not one of the trusted certificates"

    return trust


def _public_key(certificate: bytes) -> bytes:
    return (
        x509.load_pem_x509_certificate(certificate)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# --- verification ----------------------------------------------------------------------------


def _walk_problem(records: Sequence[Record]) -> str | None:
    """The first break of the chain 1, 2, … in file order (None: it is whole)."""
    positions: dict[int, list[int]] = {}
    for index, record in enumerate(records):
        positions.setdefault(record.seq, []).append(index)
    expected, prev = 1, GENESIS
    for index, record in enumerate(records):
        seq = record.seq
        if seq < expected:
            if seq < 1:
                return f"record {index + 1} has the invalid sequence number {seq}"
            return f"entry {seq} appears twice (an entry was inserted after entry {expected - 1})"
        if seq > expected:
            later = sorted(
                s for s, at in positions.items() if expected <= s < seq and at[-1] > index
            )
            if later and later[0] == expected:
                return f"entry {expected} is out of order (found after entry {seq})"
            last_missing = later[0] - 1 if later else seq - 1
            if last_missing == expected:
                return f"entry {expected} is missing (dropped)"
            return f"entries {expected}-{last_missing} are missing (dropped)"
        if record_hash(seq, record.prev, record.entry) != record.hash:
            return f"entry {seq} was modified"
        if record.prev != prev:
            return f"entry {seq - 1} was modified (entry {seq} links to a different one)"
        expected, prev = seq + 1, record.hash
    return None


def verify_chain(
    records: Sequence[Record], checkpoints: Sequence[Checkpoint], trust: Trust
) -> Report:
    """Check the chain and every checkpoint (signature, signer, position); the first problem.

    Records are taken in the given (file) order; checkpoints by sequence number.
    """
    ordered = sorted(checkpoints, key=lambda c: (c.seq, c.time))

    def report(problem: str | None, signed_through: int = 0) -> Report:
        return Report(problem, len(records), len(checkpoints), signed_through)

    problem = _walk_problem(records)
    if problem is not None:
        return report(problem)
    hashes = [record.hash for record in records]
    signed_through = 0
    for checkpoint in ordered:
        where = f"checkpoint at {checkpoint.seq}"
        problem = checkpoint_problem(checkpoint)
        if problem is None and (reason := trust(checkpoint.certificate, checkpoint.time)):
            problem = f"{where}: signer not trusted: {reason}"
        if problem is None and checkpoint.seq > len(records):
            problem = (
                f"the log ends at entry {len(records)}, before checkpoint "
                f"{checkpoint.seq} (truncated)"
            )
        if problem is None and (
            checkpoint.seq < 1 or hashes[checkpoint.seq - 1] != checkpoint.head
        ):
            span = f"{signed_through + 1}-{checkpoint.seq}"
            problem = f"{where} does not match the chain (an entry in {span} was rewritten)"
        if problem is not None:
            return report(problem, signed_through)
        signed_through = checkpoint.seq
    return report(None, signed_through)


# --- who an entry is about -------------------------------------------------------------------

_ROLE_SHOWN = re.compile(
    r"(?:PlatformAdmin|FunctionOwner|Invalid"
    r'|(?:DataOwnerManager|DataOwner)\("(?:[^"\\]|\\.)*"\)) \}'
)


def audit_user(user_id: str, role: str) -> str:
    """Teaclave's rendering of a caller: ``{ user: alice, role: DataOwner("x") }``."""
    parsed = Role.parse(role)
    shown = parsed.kind.value
    if parsed.kind in (RoleKind.DATA_OWNER, RoleKind.DATA_OWNER_MANAGER):
        shown += f"({json.dumps(parsed.attribute, ensure_ascii=False)})"
    return f"{{ user: {user_id}, role: {shown} }}"


def is_about(user: str, user_id: str) -> bool:
    """Whether an entry's ``user`` (as :func:`audit_user` renders it) is ``user_id``.

    Exact: the rest after the id must be one whole role rendering, so an id
    containing ``, role: `` cannot claim another user's entries.
    """
    prefix = f"{{ user: {user_id}, role: "
    return user.startswith(prefix) and _ROLE_SHOWN.fullmatch(user, len(prefix)) is not None


# --- JSON lines ------------------------------------------------------------------------------


def _entry_plain(entry: AuditEntry) -> dict[str, Any]:
    return {
        "microsecond": entry.microsecond,
        "ip": _ip_text(entry.ip),
        "user": entry.user,
        "message": entry.message,
        "result": entry.result,
    }


def record_json(record: Record) -> bytes:
    """One line of an exported log (and the stored form of a record)."""
    return _dumps(
        {
            "kind": "entry",
            "seq": record.seq,
            "entry": _entry_plain(record.entry),
            "prev": record.prev.hex(),
            "hash": record.hash.hex(),
        }
    )


def checkpoint_json(checkpoint: Checkpoint) -> bytes:
    """One line of an exported log (and the stored form of a checkpoint)."""
    return _dumps(
        {
            "kind": "checkpoint",
            "seq": checkpoint.seq,
            "head": checkpoint.head.hex(),
            "time": checkpoint.time,
            "certificate": checkpoint.certificate.decode(),
            "signature": checkpoint.signature.hex(),
        }
    )


def parse_line(line: bytes | str) -> Record | Checkpoint:
    """A line of an exported log; :class:`LogFormatError` if it is neither kind."""
    try:
        data = json.loads(line, object_pairs_hook=_no_duplicates)
        if not isinstance(data, dict):
            raise LogFormatError("not a JSON object")
        if data.get("kind") == "entry":
            fields = _fields(data, {"kind", "seq", "entry", "prev", "hash"})
            return Record(
                _int(fields["seq"]),
                _parse_entry(fields["entry"]),
                _hash(fields["prev"]),
                _hash(fields["hash"]),
            )
        if data.get("kind") == "checkpoint":
            fields = _fields(data, {"kind", "seq", "head", "time", "certificate", "signature"})
            return Checkpoint(
                _int(fields["seq"]),
                _hash(fields["head"]),
                _int(fields["time"]),
                _str(fields["certificate"]).encode(),
                bytes.fromhex(_str(fields["signature"])),
            )
        raise LogFormatError("neither an entry nor a checkpoint")
    except (ValueError, TypeError) as exc:  # JSONDecodeError, bad hex, bad IP
        raise LogFormatError(str(exc)) from None


def parse_log(lines: Iterable[bytes | str]) -> tuple[list[Record], list[Checkpoint]]:
    """The records (in line order) and checkpoints of an exported log; blank lines are skipped.

    :class:`LogFormatError` names the first unreadable line.
    """
    records: list[Record] = []
    checkpoints: list[Checkpoint] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = parse_line(line)
        except LogFormatError as exc:
            raise LogFormatError(f"line {number} is not a record or checkpoint: {exc}") from None
        if isinstance(item, Record):
            records.append(item)
        else:
            checkpoints.append(item)
    return records, checkpoints


def _parse_entry(value: Any) -> AuditEntry:
    fields = _fields(value, {"microsecond", "ip", "user", "message", "result"})
    result = fields["result"]
    if not isinstance(result, bool):
        raise LogFormatError("result is not true or false")
    return AuditEntry(
        _int(fields["microsecond"]),
        _ip_bytes(_str(fields["ip"])),
        _str(fields["user"]),
        _str(fields["message"]),
        result,
    )


def _ip_text(ip: bytes) -> str:
    """A 16-byte IP as compressed IPv6 text; any other length (not sent by the frontend) as hex."""
    return ipaddress.IPv6Address(ip).compressed if len(ip) == 16 else ip.hex()


def _ip_bytes(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed if ":" in text else bytes.fromhex(text)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise LogFormatError("duplicate keys")
    return data


def _fields(value: Any, names: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != names:
        raise LogFormatError(f"expected exactly the fields {', '.join(sorted(names))}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise LogFormatError(f"{value!r} is not an integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise LogFormatError(f"{value!r} is not a string")
    return value


def _hash(value: Any) -> bytes:
    digest = bytes.fromhex(_str(value))
    if len(digest) != len(GENESIS):
        raise LogFormatError("a hash is not 32 bytes")
    return digest
