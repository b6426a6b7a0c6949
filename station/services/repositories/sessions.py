"""The sessions repository (h3 owns it: the Session aggregate's persistence).

Only what the converted services need so far; the aggregate's load/save
come with `station.domain.session.Session`.
"""

from __future__ import annotations

from typing import Protocol


class SessionRepository(Protocol):
    async def live_session_of_agent(self, agent_id: str) -> str | None:
        """The id of one of the agent's sessions not yet final, or None."""
        ...
