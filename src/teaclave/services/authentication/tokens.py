"""Login tokens: HS512 JWTs signed with a key kept (sealed) in storage.

Claims are Teaclave's ``{sub, role, iss, exp}`` plus ``gen``, the account's
token generation when the token was issued (see :mod:`.users`).
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

from teaclave.core.errors import Status, TeaclaveError, unauthenticated
from teaclave.services.authentication.users import User
from teaclave.storage import keys
from teaclave.storage.api import Conflict, Store, Write

ISSUER = "Teaclave"
ALGORITHM = "HS512"
SIGNING_KEY = keys.AUTH_SECRET + "token-signing-key"
KEY_BYTES = 64


@dataclass(frozen=True)
class Claims:
    """A verified token's claims."""

    sub: str
    role: str
    iss: str
    exp: int
    gen: int


def load_signing_key(store: Store) -> bytes:
    """The platform's token signing key, created on first use (first writer wins)."""
    record = store.get([SIGNING_KEY])[0]
    if not record.exists:
        with contextlib.suppress(Conflict):  # another instance created it: use theirs
            store.commit([(SIGNING_KEY, 0)], [Write(SIGNING_KEY, secrets.token_bytes(KEY_BYTES))])
        record = store.get([SIGNING_KEY])[0]
    if len(record.value) != KEY_BYTES:
        raise TeaclaveError(Status.INTERNAL, "stored token signing key is malformed")
    return record.value


class TokenSigner:
    """Issues and verifies tokens with one key."""

    def __init__(self, key: bytes, lifetime_secs: int) -> None:
        self._key = key
        self._lifetime = lifetime_secs

    def issue(self, user: User, now: float) -> str:
        """A token for ``user``'s current role and generation, valid from ``now``."""
        claims = {
            "sub": user.id,
            "role": user.role,
            "iss": ISSUER,
            "exp": int(now) + self._lifetime,
            "gen": user.generation,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str, user_id: str) -> Claims:
        """The claims of ``token`` if it is ours, unexpired and for ``user_id``.

        Does not check the account; UNAUTHENTICATED "authentication failed" otherwise.
        """
        try:
            raw: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                subject=user_id,
                options={"require": ["sub", "role", "iss", "exp", "gen"]},
            )
        except jwt.PyJWTError:
            raise unauthenticated() from None
        role, exp, gen = raw["role"], raw["exp"], raw["gen"]
        if raw["sub"] != user_id or raw["iss"] != ISSUER:  # also checked here, not only by PyJWT
            raise unauthenticated()
        if not (isinstance(role, str) and isinstance(exp, int) and isinstance(gen, int)):
            raise unauthenticated()
        return Claims(user_id, role, ISSUER, exp, gen)
