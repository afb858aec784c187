"""Input and output files (reference §3.4, §4.3)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TypeVar

from teaclave.core.errors import TeaclaveError, invalid_argument, permission_denied
from teaclave.core.ids import Kind, external_id, new_uuid
from teaclave.core.model import CryptoSchema, FileCrypto, InputFile, OutputFile
from teaclave.services.management.common import Caller, Txn, transact
from teaclave.storage import keys
from teaclave.storage.api import Store

F = TypeVar("F", InputFile, OutputFile)

_NAMESPACES: dict[type[InputFile | OutputFile], tuple[Kind, str]] = {
    InputFile: (Kind.INPUT, keys.INPUT),
    OutputFile: (Kind.OUTPUT, keys.OUTPUT),
}

FUSION_URL = "fusion:///TEACLAVE_FUSION_BASE/{uuid}.fusion"
FUSION_KEY_BYTES = 16


def invalid_data_id() -> TeaclaveError:
    """INVALID_ARGUMENT "invalid data id"."""
    return invalid_argument("invalid data id")


def file_key(cls: type[InputFile | OutputFile], file_uuid: str) -> str:
    """The storage key of a file record."""
    return _NAMESPACES[cls][1] + file_uuid


def file_id(record: InputFile | OutputFile) -> str:
    """The ExternalID of a file record."""
    return external_id(_NAMESPACES[type(record)][0], record.uuid)


def load_file(txn: Txn, cls: type[F], file_uuid: str) -> F:
    """A file record; INVALID_ARGUMENT "invalid data id" if absent."""
    return txn.load(cls, file_key(cls, file_uuid), invalid_data_id())


def register_file(store: Store, record: InputFile | OutputFile) -> str:
    """Store a new file record; returns its id."""

    transact(store, lambda txn: txn.put(file_key(type(record), record.uuid), record))
    return file_id(record)


def get_file(store: Store, caller: Caller, cls: type[F], file_uuid: str) -> F:
    """A file record its owner asks for."""
    record = transact(store, lambda txn: load_file(txn, cls, file_uuid))
    if caller.user_id not in record.owners:
        raise permission_denied("permission denied: not an owner of the file")
    return record


def update_file(store: Store, caller: Caller, cls: type[F], file_uuid: str, url: str) -> str:
    """A copy of a file under a new id with a new url; only a sole owner may do this."""
    new = new_uuid()

    def body(txn: Txn) -> F:
        record = load_file(txn, cls, file_uuid)
        if record.owners != {caller.user_id}:
            raise permission_denied("permission denied: only a file's sole owner can update it")
        updated = replace(record, uuid=new, url=url)
        if isinstance(record, OutputFile):
            _retire(txn, record)
        txn.put(file_key(cls, new), updated)
        return updated

    return file_id(transact(store, body))


def _retire(txn: Txn, output: OutputFile) -> None:
    """Mark an output replaced by its updated copy: the copy keeps the key and iv, and
    only one of the two may ever be written (no nonce reuse)."""
    if reason := output.why_not_writable():
        raise permission_denied(
            f"permission denied: the output {reason}; register a new output instead"
        )
    txn.put(file_key(OutputFile, output.uuid), replace(output, replaced=True))


def register_fusion_output(store: Store, caller: Caller, owners: frozenset[str]) -> str:
    """A platform-internal output shared by several owners, caller among them."""
    if len(owners) < 2:
        raise permission_denied("permission denied: a fusion output needs at least two owners")
    if caller.user_id not in owners:
        raise permission_denied("permission denied: caller must be an owner of the fusion output")
    uuid = new_uuid()
    crypto = FileCrypto(CryptoSchema.TEACLAVE_FILE_128, secrets.token_bytes(FUSION_KEY_BYTES))
    return register_file(store, OutputFile(uuid, FUSION_URL.format(uuid=uuid), crypto, owners))


def register_input_from_output(store: Store, caller: Caller, output_uuid: str) -> str:
    """An input with the same uuid, url, key, cmac and owners as a written output."""

    def body(txn: Txn) -> InputFile:
        output = load_file(txn, OutputFile, output_uuid)
        if caller.user_id not in output.owners:
            raise permission_denied("permission denied: not an owner of the output")
        if output.cmac is None:
            raise invalid_argument("invalid output file: it has not been written yet")
        record = InputFile(output.uuid, output.url, output.cmac, output.crypto, output.owners)
        txn.put(file_key(InputFile, record.uuid), record)
        return record

    return file_id(transact(store, body))
