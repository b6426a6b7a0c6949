"""The sessions repository (h3 owns it): the `Session` aggregate's persistence.

A session is loaded with its settlement intent and saved with it; the
stored strings are the domain enums' values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from station.domain.session import Session


@dataclass(frozen=True, slots=True)
class OpenSession:
    """A session in which money is held and a charge may be flowing (authorized, charging)."""

    session_id: str
    agent_id: str
    charge_point_id: str
    transaction_ref: str | None


class SessionRepository(Protocol):
    async def get(self, session_id: str, *, lock: bool = False) -> Session | None:
        """The session (and its settlement intent), or None; `lock` holds it until the
        unit ends."""
        ...

    async def by_id_token(self, id_token: str, *, lock: bool = False) -> Session | None:
        """The session an OCPP id token was issued for, or None."""
        ...

    async def add(self, session: Session) -> None:
        """A new session; a second live session of one negotiation raises
        ``AlreadyExists(key="negotiation")``."""
        ...

    async def save(self, session: Session) -> None:
        """Write a session back with its settlement intent; NotFound if it is not there."""
        ...

    async def live_session_of_agent(self, agent_id: str) -> str | None:
        """The id of one of the agent's sessions not yet final, or None."""
        ...

    async def open_of_suspended_agents(self, agent_id: str | None = None) -> list[OpenSession]:
        """Open sessions (authorized or charging) of suspended agents (or of that one, if
        it is suspended), oldest first."""
        ...

    async def mark_stop_reason(self, session_id: str, reason: str) -> None:
        """Set the session's stop reason unless it has one already."""
        ...

    async def spent_by_payer_method(
        self, agent_id: str, payer_method: str, *, since: datetime
    ) -> Decimal:
        """Captured (else capped) amounts of the agent's sessions paid with that method,
        created at or after `since`, not ended unpaid (failed, cancelled)."""
        ...
