"""The key that handshake proofs are computed with, derived from the shared secret.

A proof is an HMAC-SHA256, which costs a microsecond: keyed with the secret itself,
anyone holding one proof (a party the node dialled, or an observer of a handshake
outside TLS) could test millions of candidate secrets a second.  Keyed with
``scrypt(secret)`` instead, each candidate costs one scrypt, which is slow and needs
its memory (see ``SCRYPT_N``...), while the node pays it once, when it starts.

The salt is a constant: every node of a cluster must derive the same key from the
same secret, and nothing else is shared before the handshake.  So a table computed
for a list of likely secrets works against every cluster; only a secret that is not
on such a list (a random one: ``new_secret()``) is protected.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from typing import Final

__all__ = [
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "SCRYPT_SALT",
    "derive_key",
    "new_secret",
]

# RFC 7914's interactive parameters: 16 MiB and, measured on this project's
# machines, 40-65 ms of one core per derivation (docs/security.md has the figures).
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SCRYPT_SALT: Final = b"triopycos/2 handshake key"
_KEY_SIZE: Final = 32
# scrypt needs 128 * N * r bytes; Python's default ceiling is 32 MiB, kept explicit.
_MAXMEM: Final = 2 * 128 * SCRYPT_N * SCRYPT_R


def derive_key(secret: str | bytes) -> bytes:
    """The 32-byte proof key for ``secret``.  The first call for a secret costs one
    scrypt; later ones, by any node of this process, are free (the last few
    secrets are kept), so no connection ever waits for one."""
    return _derive(secret.encode() if isinstance(secret, str) else bytes(secret))


@functools.lru_cache(maxsize=16)
def _derive(secret: bytes) -> bytes:
    return hashlib.scrypt(
        secret,
        salt=SCRYPT_SALT,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=_MAXMEM,
        dklen=_KEY_SIZE,
    )


def new_secret() -> str:
    """A random secret of 256 bits, as 43 URL-safe characters."""
    return secrets.token_urlsafe(32)
