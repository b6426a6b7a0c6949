"""In-memory repositories over a unit's working tables (`tests.fakes.unit_of_work`).

Each works on ``tables[<name>]``, a dict the unit copied from the committed
state when it began; the unit swaps it in on commit or drops it on rollback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from station.domain.session import Session, SessionStatus
from station.errors import NotFound
from station.services.repositories.agents import Agent
from station.services.unit_of_work import AlreadyExists
from station.store.audit import canonical_json

Tables = dict[str, dict[Any, Any]]


class FakeAgents:
    def __init__(self, tables: Tables) -> None:
        self._rows: dict[str, Agent] = tables.setdefault("agents", {})

    async def get(self, agent_id: str, *, lock: bool = False) -> Agent | None:
        return self._rows.get(agent_id)

    async def list(self, *, status: str | None = None) -> list[Agent]:
        rows = [a for a in self._rows.values() if status is None or a.status == status]
        return sorted(rows, key=lambda a: (a.created_at, a.agent_id))

    async def add(self, agent: Agent) -> None:
        if agent.agent_id in self._rows:
            raise AlreadyExists("agent_id already exists", key="agent_id")
        self._rows[agent.agent_id] = agent

    async def save(self, agent: Agent) -> None:
        if agent.agent_id not in self._rows:
            raise NotFound(f"no agent {agent.agent_id}")
        self._rows[agent.agent_id] = agent


@dataclass(frozen=True, slots=True)
class FakeAuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    data: str  # canonical JSON, as the real log keeps it


class FakeAuditLog:
    def __init__(self, tables: Tables) -> None:
        self._rows: dict[int, FakeAuditEntry] = tables.setdefault("audit", {})

    async def record(
        self,
        *,
        actor: str,
        action: str,
        subject: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        payload = canonical_json(dict(data or {}))  # refuses floats like the real log
        seq = len(self._rows) + 1
        self._rows[seq] = FakeAuditEntry(seq, datetime.now(UTC), actor, action, subject, payload)


class FakeSessions:
    """Sessions as the aggregate values they are (a settlement intent rides along)."""

    def __init__(self, tables: Tables) -> None:
        self._rows: dict[str, Session] = tables.setdefault("sessions", {})

    async def get(self, session_id: str, *, lock: bool = False) -> Session | None:
        return self._rows.get(session_id)

    async def by_id_token(self, id_token: str, *, lock: bool = False) -> Session | None:
        return next((s for s in self._rows.values() if s.id_token == id_token), None)

    async def add(self, session: Session) -> None:
        if session.session_id in self._rows:
            raise AlreadyExists("session_id already exists", key="session_id")
        frees = _FREES_NEGOTIATION
        if (
            any(
                s.negotiation_id == session.negotiation_id and s.status not in frees
                for s in self._rows.values()
            )
            and session.status not in frees
        ):
            raise AlreadyExists("negotiation already exists", key="negotiation")
        self._rows[session.session_id] = session

    async def save(self, session: Session) -> None:
        if session.session_id not in self._rows:
            raise NotFound(f"no session {session.session_id}")
        self._rows[session.session_id] = session

    async def live_session_of_agent(self, agent_id: str) -> str | None:
        for row in self._rows.values():
            if row.agent_id == agent_id and not row.status.final:
                return row.session_id
        return None


# A failed or cancelled session frees its negotiation (the SQL partial unique index).
_FREES_NEGOTIATION = frozenset({SessionStatus.FAILED, SessionStatus.CANCELLED})
