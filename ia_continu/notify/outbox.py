"""Notifications Discord could not take in time, kept for the next cycle: a bounded outbox.

One JSON file, ``<IAC_DATA_DIR>/discord-outbox.json``::

    {"counts": {"delivered": 12, "queued": 3, "dropped": 1},
     "messages": [{"embeds": [...], "queued_at": 1764408000.0, "attempts": 2,
                   "reason": "rate limited, retry_after=30.00s over the 10s cap"}]}

``messages`` are the undelivered Discord messages, oldest first, at most ``max_messages``
(``IAC_DISCORD_OUTBOX_MAX_MESSAGES``; beyond it the oldest are dropped, so the file stays
under ~1 MB: a message is at most 6000 characters of text). ``counts`` are cumulative
outcomes since the file was created, pushed by the flows as the Prometheus counter
``iac_notifications_total{outcome}``: ``delivered`` (sent, at once or from the outbox),
``queued`` (a new message that had to wait), ``dropped`` (given up on). So every message
ever sent ends up once in ``delivered`` or ``dropped``, or is still waiting.

Flow runs are separate processes and may overlap (a failure hook, a manual ``notify``): each
read-modify-write holds an exclusive ``fcntl.flock`` on ``discord-outbox.json.lock`` and
replaces the file atomically (``os.replace``), so a crash never leaves half a file. A sender
*takes* the waiting messages out under the lock, sends them without holding it, then
*settles* (puts back what is still undelivered, ahead of anything queued meanwhile): two
senders never send the same message; a process killed between the two loses the messages
it held (at most one cycle's worth; notifications are best effort).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from ia_continu.settings import Settings

FILE_NAME = "discord-outbox.json"
OUTCOMES = ("delivered", "queued", "dropped")


class Pending(BaseModel):
    """One undelivered Discord message.

    ``embeds``: the message's embeds; ``queued_at``: Unix seconds when it was created;
    ``attempts``: delivery rounds that tried it and failed; ``reason``: the last failure.
    """

    model_config = ConfigDict(frozen=True)

    embeds: list[dict[str, Any]]
    queued_at: float
    attempts: int = Field(0, ge=0)
    reason: str = ""

    def tried(self, reason: str) -> Pending:
        """This message after one more failed round, because of ``reason``."""
        return self.model_copy(update={"attempts": self.attempts + 1, "reason": reason})


class _State(BaseModel):
    counts: dict[str, int] = Field(default_factory=dict)
    messages: list[Pending] = Field(default_factory=list)


class Outbox:
    """The outbox file at ``path``, holding at most ``max_messages`` (0: keeps nothing)."""

    def __init__(self, path: Path, max_messages: int = 100) -> None:
        if max_messages < 0:
            raise ValueError(f"max_messages must be >= 0, got {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages

    @classmethod
    def for_settings(cls, settings: Settings) -> Outbox:
        """``<IAC_DATA_DIR>/discord-outbox.json`` bounded by ``IAC_DISCORD_OUTBOX_MAX_MESSAGES``."""
        return cls(settings.data_dir / FILE_NAME, settings.discord_outbox_max_messages)

    # -- reading (no lock: writers replace the file atomically) -----------------------

    def messages(self) -> list[Pending]:
        """Waiting messages, oldest first."""
        return self._load().messages

    def size(self) -> int:
        """Number of waiting messages."""
        return len(self._load().messages)

    def counts(self) -> dict[str, int]:
        """Cumulative outcomes: ``delivered``, ``queued``, ``dropped`` (0 when never seen)."""
        counts = self._load().counts
        return {outcome: int(counts.get(outcome, 0)) for outcome in OUTCOMES}

    # -- read-modify-write (under the lock) --------------------------------------------

    def take(self) -> list[Pending]:
        """Remove and return every waiting message, oldest first (the caller sends them,
        then hands the undelivered back to ``settle``)."""
        if not self.path.exists():
            return []
        with self._locked():
            state = self._load()
            if state.messages:
                self._save(_State(counts=state.counts))
            return state.messages

    def settle(self, keep: Sequence[Pending], counts: Mapping[str, int]) -> list[Pending]:
        """Put ``keep`` back ahead of anything queued since ``take``, add ``counts`` to the
        cumulative counts, and drop the oldest messages beyond ``max_messages``.

        Returns:
            The messages dropped for lack of room (already counted as ``dropped``).
        """
        if not keep and not any(counts.values()):
            return []
        with self._locked():
            state = self._load()
            messages = [*keep, *state.messages]
            overflow = max(len(messages) - self.max_messages, 0)
            dropped, messages = messages[:overflow], messages[overflow:]
            totals = {outcome: int(state.counts.get(outcome, 0)) for outcome in OUTCOMES}
            for outcome, number in counts.items():
                totals[outcome] = totals.get(outcome, 0) + int(number)
            totals["dropped"] += len(dropped)
            self._save(_State(counts=totals, messages=messages))
            return dropped

    # -- file handling ---------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held for a file read and write: milliseconds
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> _State:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _State()
        except OSError as exc:
            logger.warning("Discord outbox {} unreadable ({}): treated as empty", self.path, exc)
            return _State()
        try:
            return _State.model_validate_json(text)
        except ValidationError as exc:
            # Set the damaged file aside (for a human to look at) rather than fail every cycle.
            aside = self.path.with_name(self.path.name + ".corrupt")
            logger.warning(
                "Discord outbox {} is not valid ({} error(s), first at {}): moved to {}, "
                "starting empty",
                self.path,
                exc.error_count(),
                ".".join(str(p) for p in exc.errors()[0]["loc"]) or "top level",
                aside,
            )
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return _State()

    def _save(self, state: _State) -> None:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=self.path.parent, prefix=".outbox-", delete=False
        ) as handle:
            handle.write(state.model_dump_json())
            temporary = handle.name
        os.replace(temporary, self.path)
