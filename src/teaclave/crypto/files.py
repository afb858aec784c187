"""Reading and writing user files in their registered crypto schema (reference §5).

Plaintext is only ever handed over once a file is fully verified.
"""

from __future__ import annotations

import io

from teaclave.core.errors import Status, TeaclaveError, invalid_argument
from teaclave.core.model import CryptoSchema, FileCrypto
from teaclave.crypto import aesgcm
from teaclave.crypto.streams import Reader, Writer, chunks

_AES_GCM = (CryptoSchema.AES_GCM_128, CryptoSchema.AES_GCM_256)


def _unsupported_yet(schema: CryptoSchema) -> TeaclaveError:
    return TeaclaveError(Status.FAILED_PRECONDITION, f"{schema.value} is not supported yet")


def decrypt_input(crypto: FileCrypto, cmac: bytes, source: Reader, *, role: str) -> bytes:
    """The verified plaintext of an input file.

    aes-gcm: the file's tag must equal ``cmac`` and authenticate; raw: the
    bytes as they are (``cmac`` ignored). Failures raise
    :class:`~teaclave.crypto.aesgcm.DecryptionError` naming ``role``.
    """
    sink = io.BytesIO()
    if crypto.schema in _AES_GCM:
        aesgcm.decrypt_to(crypto.key, crypto.iv, source, sink, role=role, cmac=cmac)
    elif crypto.schema is CryptoSchema.RAW:
        for chunk in chunks(source):
            sink.write(chunk)
    else:
        raise _unsupported_yet(crypto.schema)
    return sink.getvalue()


def check_output_schema(crypto: FileCrypto) -> None:
    """Fail unless outputs can be written in ``crypto``'s schema."""
    if crypto.schema is CryptoSchema.RAW:
        raise invalid_argument("OutputFile: unsupported type")
    if crypto.schema not in _AES_GCM:
        raise _unsupported_yet(crypto.schema)


def encrypt_output(crypto: FileCrypto, plaintext: Reader, sink: Writer) -> bytes:
    """Write ``plaintext`` to ``sink`` encrypted per ``crypto``; returns the file's cmac."""
    check_output_schema(crypto)
    return aesgcm.encrypt(crypto.key, crypto.iv, plaintext, sink)
