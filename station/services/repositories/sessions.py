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


@dataclass(frozen=True, slots=True)
class Unstarted:
    """A session with a hold whose transaction has not been reported."""

    session_id: str
    charge_point_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Quiet:
    """A live session not heard of lately, with when its charge point was last seen."""

    session_id: str
    charge_point_id: str
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class Unstopped:
    """A stopping session whose transaction has not ended."""

    session_id: str
    charge_point_id: str
    transaction_ref: str
    stop_requested_at: datetime | None


@dataclass(frozen=True, slots=True)
class PendingSettlement:
    session_id: str
    node_id: str
    created_at: datetime


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

    async def live_session_of_negotiation(self, negotiation_id: str) -> str | None:
        """The id of the negotiation's session not failed or cancelled, or None."""
        ...

    async def record_anomaly(
        self,
        session: Session,
        *,
        kind: str,
        detail: str,
        transaction_id: int | None,
        at: datetime | None,
    ) -> None:
        """Record an anomaly of the session's charge point (e.g. ``unbilled_energy``)."""
        ...

    # -- what the reconciler looks for (reads) -------------------------------------------

    async def pending_settlements(self) -> list[PendingSettlement]:
        """Settlement intents not done (oldest first)."""
        ...

    async def unstarted(self, created_before: datetime) -> list[Unstarted]:
        """Sessions with a hold, authorised (or stopped) before `created_before`, whose
        transaction was never reported."""
        ...

    async def ended_unsettled(self, updated_before: datetime) -> list[str]:
        """Stopping sessions whose transaction ended, untouched since `updated_before`."""
        ...

    async def quiet(self, updated_before: datetime) -> list[Quiet]:
        """Charging or stopping sessions untouched since `updated_before`."""
        ...

    async def unstopped(self, charge_point_id: str | None = None) -> list[Unstopped]:
        """Stopping sessions whose transaction runs on (of one charge point, or all)."""
        ...

    async def ended_with_open_hold(self) -> list[str]:
        """Terminal sessions whose hold is still ``requires_capture``."""
        ...

    async def holds_in_doubt(self, created_before: datetime) -> list[str]:
        """Sessions created before `created_before` whose hold's outcome is not known."""
        ...
