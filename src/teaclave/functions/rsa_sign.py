"""``builtin-rsa-sign`` (reference §7.9): sign the ``data`` argument with the ``rsa_key`` input.

The key is a DER PKCS#1 RSAPrivateKey; the result is the base64 RSASSA-PKCS1-v1_5
SHA-256 signature of the UTF-8 bytes of ``data``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from teaclave.core.errors import invalid_argument
from teaclave.functions.builtin import Builtin
from teaclave.functions.runtime import Runtime

INPUT = "rsa_key"
MAX_KEY_BYTES = 1 << 16
"""Far above any RSA key's DER size (a 16384-bit key is about 9.5 KiB)."""


@dataclass(frozen=True)
class RsaSignArguments:
    """The text to sign."""

    data: str


def rsa_sign(arguments: RsaSignArguments, runtime: Runtime) -> str:
    """The base64 signature of ``data``."""
    with runtime.open_input(INPUT) as stream:
        der = stream.read(MAX_KEY_BYTES + 1)
    if len(der) > MAX_KEY_BYTES:
        raise invalid_argument(f"{INPUT} is larger than {MAX_KEY_BYTES} bytes")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise invalid_argument(f"{INPUT} is not a DER RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise invalid_argument(f"{INPUT} is not an RSA key")
    signature = key.sign(arguments.data.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


BUILTIN = Builtin("builtin-rsa-sign", RsaSignArguments, rsa_sign, inputs=(INPUT,))
