"""The audit log as the services see it: append an entry inside the unit of work."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


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
