"""Operator password hashing for the console: scrypt (``hashlib.scrypt``, RFC 7914),
a random salt per hash, constant-time comparison.

Encoded form: ``scrypt:<n>:<r>:<p>:<salt b64>:<hash b64>`` (no ``$``, which compose files
would expand); only this string goes into
settings (``IAC_UI_PASSWORD_HASH``), never the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_N, _R, _P, _LEN = 2**14, 8, 1, 32


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


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (False for a malformed ``encoded``)."""
    try:
        scheme, n, r, p, salt, expected = encoded.split(":")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(base64.urlsafe_b64decode(expected)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.urlsafe_b64decode(expected))
