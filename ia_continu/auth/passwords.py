"""Operator password hashing for the console: scrypt (``hashlib.scrypt``, RFC 7914),
a random salt per hash, constant-time comparison.

Encoded form: ``scrypt:<n>:<r>:<p>:<salt b64>:<hash b64>`` (no ``$``, which compose files
would expand); only this string goes into
settings (``IAC_UI_PASSWORD_HASH``), never the password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import NamedTuple

_N, _R, _P, _LEN = 2**14, 8, 1, 32
# hashlib.scrypt refuses more than 32 MiB by default (maxmem); 128 * n * r bytes are needed.
_MAX_MEMORY = 32 * 1024 * 1024


class _Encoded(NamedTuple):
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


def hash_password(password: str) -> str:
    """Encode ``password`` for storage.

    Raises:
        ValueError: if the password is shorter than 8 characters.
    """
    if len(password) < 8:
        raise ValueError("the password must have at least 8 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_LEN)
    encode = base64.urlsafe_b64encode
    return f"scrypt:{_N}:{_R}:{_P}:{encode(salt).decode()}:{encode(digest).decode()}"


def check_encoded(encoded: str) -> None:
    """Check that ``encoded`` has the form :func:`hash_password` produces.

    Raises:
        ValueError: saying which part is wrong; the message never quotes ``encoded``
            (a hash is a secret too).
    """
    _parse(encoded)


def _parse(encoded: str) -> _Encoded:
    parts = encoded.strip().split(":")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError(
            "not a hash from `ia-continu ui-password` (expected scrypt:<n>:<r>:<p>:<salt>:<hash>)"
        )
    try:
        n, r, p = (int(part) for part in parts[1:4])
    except ValueError:
        raise ValueError("the scrypt parameters n, r, p must be integers") from None
    # Bounded so that a mistyped hash cannot make each login take minutes or all memory.
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or 128 * n * r > _MAX_MEMORY:
        raise ValueError("the scrypt parameters n, r, p are out of range")
    try:
        salt, digest = (base64.urlsafe_b64decode(part.encode()) for part in parts[4:])
    except (binascii.Error, ValueError):
        raise ValueError("the salt or the hash is not URL-safe base64") from None
    if not salt or len(digest) < 16:
        raise ValueError("the salt or the hash is too short")
    return _Encoded(n, r, p, salt, digest)


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (False for a malformed ``encoded``)."""
    try:
        parsed = _parse(encoded)
    except ValueError:
        return False
    digest = hashlib.scrypt(
        password.encode(),
        salt=parsed.salt,
        n=parsed.n,
        r=parsed.r,
        p=parsed.p,
        dklen=len(parsed.digest),
        maxmem=2 * _MAX_MEMORY,
    )
    return hmac.compare_digest(digest, parsed.digest)
