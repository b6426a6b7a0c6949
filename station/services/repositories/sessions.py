"""The sessions repository (h3 owns it): the `Session` aggregate's persistence.

A session is loaded with its settlement intent and saved with it; the
stored strings are the domain enums' values.
"""

from __future__ import annotations

from typing import Protocol

from station.domain.session import Session


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
