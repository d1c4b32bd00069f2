"""Bearer tokens of the prediction API: created, listed and revoked by operators.

A token reads ``iac_<id>_<secret>``: ``id`` (8 hex characters) is public and finds
the row; ``secret`` (256 random bits, URL-safe base64) is never stored, only its
SHA-256. A fast hash is the right tool here because the secret is random, not a
password (the scheme GitHub and PyPI use for API tokens); the comparison is
constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ia_continu.data.storage.tables import ApiTokenRow

PREFIX = "iac_"
_TOKEN_RE = re.compile(r"^iac_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class TokenInfo:
    """What can be shown about a token: everything but its secret."""

    id: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked`` at ``now`` (default: current UTC time)."""
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and _aware(self.expires_at) <= now:
            return "expired"
        return "active"


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: ApiTokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        created_at=_aware(row.created_at),
        expires_at=_aware(row.expires_at) if row.expires_at else None,
        revoked_at=_aware(row.revoked_at) if row.revoked_at else None,
    )


def create_token(
    engine: Engine, name: str, expires_in: timedelta | None = None
) -> tuple[TokenInfo, str]:
    """Create a token named ``name``; returns its info and the plaintext, shown only once.

    Args:
        engine: the database holding the ``api_tokens`` table.
        name: unique label (letters, digits, ``_.-``, at most 100 characters).
        expires_in: lifetime from now; None for a token that never expires.

    Raises:
        ValueError: bad name, non-positive lifetime, or the name is already taken.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"token name {name!r}: use letters, digits, '_', '.', '-' (max 100)")
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValueError("token lifetime must be positive")
    now = datetime.now(UTC)
    token_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    row = ApiTokenRow(
        id=token_id,
        name=name,
        secret_sha256=_digest(secret),
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
        revoked_at=None,
    )
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            session.add(row)
    except IntegrityError:
        raise ValueError(f"a token named {name!r} already exists") from None
    return _info(row), f"{PREFIX}{token_id}_{secret}"


def list_tokens(engine: Engine) -> list[TokenInfo]:
    """All tokens, oldest first (revoked and expired ones included)."""
    with Session(engine) as session:
        rows = session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at))
        return [_info(row) for row in rows]


def revoke_token(engine: Engine, name_or_id: str) -> TokenInfo:
    """Revoke the token with this name or id (idempotent: keeps the first revocation time).

    Raises:
        LookupError: no such token.
    """
    with Session(engine) as session, session.begin():
        row = session.scalars(
            select(ApiTokenRow).where(
                (ApiTokenRow.name == name_or_id) | (ApiTokenRow.id == name_or_id)
            )
        ).first()
        if row is None:
            raise LookupError(f"no API token named or with id {name_or_id!r}")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
        return _info(row)


@dataclass(frozen=True)
class _Entry:
    secret_sha256: str | None  # None: no such id
    info: TokenInfo | None
    fetched_at: float


class TokenVerifier:
    """Checks presented tokens, caching rows for ``cache_seconds``.

    The cache bounds database reads to one per token id per ``cache_seconds``; a
    revocation therefore takes effect within that delay (0 disables the cache).
    Unknown ids are cached too, so random tokens cannot hammer the database.
    """

    def __init__(self, engine: Engine, cache_seconds: float = 5.0, max_entries: int = 10_000):
        self._engine = engine
        self._ttl = cache_seconds
        self._max = max_entries
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, TokenInfo | None]:
        """Verdict from the cache alone: ``(decided, info)``; info None means refused.

        ``decided`` is False when the database must be read (:meth:`verify`).
        """
        match = _TOKEN_RE.match(token)
        if match is None:
            return True, None
        entry = self._cache.get(match.group(1))
        if entry is None or time.monotonic() - entry.fetched_at >= self._ttl:
            return False, None
        return True, self._judge(entry, match.group(2))

    def verify(self, token: str) -> TokenInfo | None:
        """The token's info if it is well formed, known, unrevoked and unexpired; else None.

        May read the database (blocking): call it off the event loop.
        """
        decided, info = self.cached(token)
        if decided:
            return info
        match = _TOKEN_RE.match(token)
        assert match is not None  # cached() returned False, so the token is well formed
        token_id = match.group(1)
        with Session(self._engine) as session:
            row = session.get(ApiTokenRow, token_id)
            entry = _Entry(
                secret_sha256=row.secret_sha256 if row else None,
                info=_info(row) if row else None,
                fetched_at=time.monotonic(),
            )
        with self._lock:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[token_id] = entry
        return self._judge(entry, match.group(2))

    @staticmethod
    def _judge(entry: _Entry, secret: str) -> TokenInfo | None:
        # Compare even for unknown ids, so timing does not tell whether an id exists.
        expected = entry.secret_sha256 or "0" * 64
        if not hmac.compare_digest(_digest(secret), expected) or entry.info is None:
            return None
        return entry.info if entry.info.state() == "active" else None
