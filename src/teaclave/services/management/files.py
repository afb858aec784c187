"""Input and output files (reference §3.4); who may touch them is the rules' (§4.3)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TypeVar

from teaclave.core.access import Facts, FileFacts
from teaclave.core.errors import TeaclaveError, invalid_argument, permission_denied
from teaclave.core.ids import Kind, external_id, new_uuid
from teaclave.core.model import CryptoSchema, FileCrypto, InputFile, OutputFile
from teaclave.services.management.common import Txn
from teaclave.storage import keys

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


def file_facts(txn: Txn, cls: type[InputFile | OutputFile], file_uuid: str) -> Facts:
    """The facts of the rules on one file; INVALID_ARGUMENT "invalid data id" if absent."""
    record = txn.load(cls, file_key(cls, file_uuid), invalid_data_id())
    return Facts(file=FileFacts(record.owners))


def register_file(txn: Txn, record: InputFile | OutputFile) -> str:
    """Store a new file record; returns its id."""
    txn.put(file_key(type(record), record.uuid), record)
    return file_id(record)


def update_file(txn: Txn, cls: type[F], file_uuid: str, url: str) -> str:
    """A copy of a file under a new id with a new url."""
    record = load_file(txn, cls, file_uuid)
    updated = replace(record, uuid=new_uuid(), url=url)
    if isinstance(record, OutputFile):
        _retire(txn, record)
    return register_file(txn, updated)


def _retire(txn: Txn, output: OutputFile) -> None:
    """Mark an output replaced by its updated copy: the copy keeps the key and iv, and
    only one of the two may ever be written (no nonce reuse)."""
    if reason := output.why_not_writable():
        raise permission_denied(
            f"permission denied: the output {reason}; register a new output instead"
        )
    txn.put(file_key(OutputFile, output.uuid), replace(output, replaced=True))


def register_fusion_output(txn: Txn, owners: frozenset[str]) -> str:
    """A platform-internal output shared by several owners."""
    uuid = new_uuid()
    crypto = FileCrypto(CryptoSchema.TEACLAVE_FILE_128, secrets.token_bytes(FUSION_KEY_BYTES))
    return register_file(txn, OutputFile(uuid, FUSION_URL.format(uuid=uuid), crypto, owners))


def register_input_from_output(txn: Txn, output_uuid: str) -> str:
    """An input with the same uuid, url, key, cmac and owners as a written output."""
    output = load_file(txn, OutputFile, output_uuid)
    if output.cmac is None:
        raise invalid_argument("invalid output file: it has not been written yet")
    return register_file(
        txn, InputFile(output.uuid, output.url, output.cmac, output.crypto, output.owners)
    )
