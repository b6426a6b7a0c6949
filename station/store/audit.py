"""The audit log: an append-only, hash-chained record of who did what.

Each row carries a sequence number, the time, the actor, the action, an
optional subject and a JSON document, plus ``prev_hash`` (the hash of the row
before it) and ``hash`` = SHA-256 over the row's canonical JSON including
``prev_hash``. Editing a row breaks its own hash; deleting or reordering rows
breaks the link to the previous row or the sequence. (Cutting rows off the
end leaves a valid shorter chain: compare with a head hash kept elsewhere —
`verify(..., expected_head=…)`.)

`record()` appends inside the caller's unit of work, so an action and its
audit row commit together. Appends are serialised so the chain never forks:
``pg_advisory_xact_lock`` on PostgreSQL; on SQLite the unit already holds
the database's write lock (``Database.session()`` begins IMMEDIATE).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, String, Text, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from station.store.base import Base, UtcDateTime, utcnow

GENESIS = "0" * 64
# A constant key for pg_advisory_xact_lock: "chargepay audit" folded to 63 bits.
_ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"chargepay.audit").digest()[:8], "big") >> 1
_BATCH = 1000


class AuditRow(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(String(200))
    # Canonical JSON text (not a JSON column: the bytes we hashed are the bytes we keep).
    data: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Decimal | datetime | date | UUID):
        return value.isoformat() if isinstance(value, datetime | date) else str(value)
    if isinstance(value, float):
        raise TypeError("floats are not audited; use Decimal")
    raise TypeError(f"cannot audit a {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8; Decimal, datetime, UUID and enums as strings."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(
    seq: int, at: datetime, actor: str, action: str, subject: str | None, data: str, prev: str
) -> str:
    body = canonical_json(
        {
            "seq": seq,
            "at": at.isoformat(),
            "actor": actor,
            "action": action,
            "subject": subject,
            "data": data,
            "prev_hash": prev,
        }
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def _lock_chain(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    data: dict[str, Any],
) -> None:
    """Append one row in the caller's unit of work (a `Database.session()`).

    `actor` says who (``operator``, ``agent:agt_…``, ``system``), `action` what
    (``agent.suspended``), `subject` on what (an id). Not safe to call from a
    read-only unit. Holds the chain lock until the caller commits.
    """
    payload = canonical_json(data)
    await _lock_chain(session)
    last = (
        await session.execute(
            select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
        )
    ).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    at = utcnow()
    session.add(
        AuditRow(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            data=payload,
            prev_hash=prev,
            hash=row_hash(seq, at, actor, action, subject, payload, prev),
        )
    )
    await session.flush()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    data: str
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "data": json.loads(self.data),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    rows: int
    head: str
    # The first row that does not fit the chain, and why.
    broken_seq: int | None = None
    reason: str | None = None


class ChainChecker:
    """Feeds rows in ``seq`` order and remembers the first one that breaks the chain."""

    def __init__(self) -> None:
        self.head, self.rows = GENESIS, 0
        self.broken_seq: int | None = None
        self.reason: str | None = None

    def feed(self, entry: AuditEntry) -> bool:
        """False (and stop feeding) once a row does not fit."""
        self.rows += 1
        if entry.seq != self.rows:
            return self._broken(entry, f"expected seq {self.rows}")
        if entry.prev_hash != self.head:
            return self._broken(entry, "prev_hash does not match the previous row")
        fields = (entry.seq, entry.at, entry.actor, entry.action, entry.subject, entry.data)
        if row_hash(*fields, entry.prev_hash) != entry.hash:
            return self._broken(entry, "row content does not match its hash")
        self.head = entry.hash
        return True

    def _broken(self, entry: AuditEntry, reason: str) -> bool:
        self.broken_seq, self.reason = entry.seq, reason
        return False

    def result(self, expected_head: str | None = None) -> Verification:
        if self.reason is not None:
            return Verification(False, self.rows, self.head, self.broken_seq, self.reason)
        if expected_head is not None and self.head != expected_head:
            return Verification(
                False, self.rows, self.head, None, "head differs from the expected head"
            )
        return Verification(True, self.rows, self.head)


def verify_entries(
    entries: Iterable[AuditEntry], *, expected_head: str | None = None
) -> Verification:
    """Check the chain in the order given (by ``seq``): pure, for any source of rows."""
    checker = ChainChecker()
    for entry in entries:
        if not checker.feed(entry):
            break
    return checker.result(expected_head)


async def entries(session: AsyncSession, *, after_seq: int = 0) -> AsyncIterator[AuditEntry]:
    """Every row after `after_seq`, by sequence, fetched in batches."""
    while True:
        rows = (
            await session.scalars(
                select(AuditRow)
                .where(AuditRow.seq > after_seq)
                .order_by(AuditRow.seq)
                .limit(_BATCH)
            )
        ).all()
        for row in rows:
            yield AuditEntry(
                row.seq,
                row.at,
                row.actor,
                row.action,
                row.subject,
                row.data,
                row.prev_hash,
                row.hash,
            )
        if len(rows) < _BATCH:
            return
        after_seq = rows[-1].seq


async def verify(session: AsyncSession, *, expected_head: str | None = None) -> Verification:
    """Walk the whole log and report the first row that breaks the chain."""
    checker = ChainChecker()
    async for entry in entries(session):
        if not checker.feed(entry):
            break
    return checker.result(expected_head)


async def export_lines(session: AsyncSession, *, after_seq: int = 0) -> AsyncIterator[str]:
    """The log as JSON lines (one object per row, newline-terminated)."""
    async for entry in entries(session, after_seq=after_seq):
        yield canonical_json(entry.to_json()) + "\n"
