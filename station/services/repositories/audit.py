"""The audit log as the services see it: append an entry inside the unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Verification:
    """The hash chain walked: how many rows, the head hash, the first row that does not fit."""

    ok: bool
    rows: int
    head: str
    # The first row that does not fit the chain, and why.
    broken_seq: int | None = None
    reason: str | None = None


class AuditLog(Protocol):
    async def record(
        self,
        *,
        actor: str,
        action: str,
        subject: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an entry; it commits (or rolls back) with the unit it was written in.

        `data` holds only str, int, bool, None, Decimal, datetime, enums, and
        lists and mappings of them (floats are refused: TypeError).
        """
        ...

    def export_lines(self, *, after_seq: int = 0) -> AsyncIterator[str]:
        """The entries after `after_seq` as canonical JSON lines (newline-terminated),
        each with its ``seq``, ``prev_hash`` and ``hash``."""
        ...

    async def verify(self, *, expected_head: str | None = None) -> Verification:
        """Walk the chain; a given `expected_head` also catches rows cut off the end."""
        ...
