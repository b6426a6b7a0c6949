"""The audit log port on the hash-chained `audit_log` table (`station.store.audit`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

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
