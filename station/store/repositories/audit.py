"""The audit log port on the hash-chained `audit_log` table (`station.store.audit`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from station.services.repositories.audit import Verification
from station.store import audit


class SqlAuditLog:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(
        self,
        *,
        actor: str,
        action: str,
        subject: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        await audit.record(
            self._session, actor=actor, action=action, subject=subject, data=dict(data or {})
        )

    def export_lines(self, *, after_seq: int = 0) -> AsyncIterator[str]:
        return audit.export_lines(self._session, after_seq=after_seq)

    async def verify(self, *, expected_head: str | None = None) -> Verification:
        return verification_of(await audit.verify(self._session, expected_head=expected_head))


def verification_of(result: audit.Verification) -> Verification:
    """The store's walk of the chain as the port's record."""
    return Verification(result.ok, result.rows, result.head, result.broken_seq, result.reason)
