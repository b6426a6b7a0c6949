"""The kill switches: suspend one agent (and stop its charging), pause everyone.

Suspending an agent commits its new status and the audit row first — from
that moment its requests get 403 ``agent_suspended`` on every node — then
asks the payments side to stop each of its open sessions through OCPP; those
settle for what was delivered through the normal stop path. Every node also
runs `watch()`, which stops suspended agents' sessions on the charge points
connected to it (a suspension from the CLI, or from another node). The
operator-wide pause refuses every new authorisation
(`station.services.limits.reserve`) without touching sessions already
running. Both are audited with who and why.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from station.errors import ChargepayError
from station.logs import get_logger
from station.services import agents as agent_registry
from station.services.limits import PAUSE
from station.services.repositories.agents import Agent
from station.store import audit
from station.store.base import utcnow
from station.store.trust import AgentRow, NonceRow, SwitchRow
from station.store.unit_of_work import SqlUnitsOfWork

if TYPE_CHECKING:
    from station.store.db import Database

_log = get_logger(__name__)
# Session statuses in which money is held and a charge may be (about to be) flowing.
OPEN_STATUSES = ("authorized", "charging")
STOP_REASON = "agent_suspended"
WATCHER = "system:kill_switch"
WATCH_INTERVAL_S = 2.0
NONCE_PURGE_EVERY = 30  # sweeps


class SessionStopper(Protocol):
    """What the kill switch needs from the payments side (`SessionService.stop`)."""

    async def stop(self, agent_id: str, session_id: str) -> dict[str, Any]:
        """Stop the session's charge (OCPP) or release its hold; it then settles."""
        ...


class ConnectedHere(Protocol):
    """Which charge points are connected to this very node (`station.ocpp.connections`)."""

    def is_connected(self, charge_point_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """What the kill switch works with, given by the composition root."""

    db: Database
    sessions: SessionStopper  # the payments side's `SessionService`
    here: ConnectedHere


@dataclass
class SuspendOutcome:
    agent: Agent | None
    sessions_stopping: list[str] = field(default_factory=list)
    # Charging on a charge point connected to another node: that node's watcher stops it.
    sessions_elsewhere: list[str] = field(default_factory=list)
    sessions_failed: list[str] = field(default_factory=list)


async def open_sessions_of_suspended(
    kill: KillSwitch, agent_id: str | None = None
) -> list[tuple[str, str, str, str | None]]:
    """(session, agent, charge point, transaction ref) of suspended agents' open sessions."""
    try:
        from station.store.payments import SessionRow
    except ImportError:  # the payments tables are not there
        return []
    query = (
        select(
            SessionRow.session_id,
            SessionRow.agent_id,
            SessionRow.charge_point_id,
            SessionRow.transaction_ref,
        )
        .join(AgentRow, AgentRow.agent_id == SessionRow.agent_id)
        .where(AgentRow.status == "suspended", SessionRow.status.in_(OPEN_STATUSES))
        .order_by(SessionRow.created_at)
    )
    if agent_id is not None:
        query = query.where(SessionRow.agent_id == agent_id)
    async with kill.db.reader() as session:
        return [(r[0], r[1], r[2], r[3]) for r in (await session.execute(query)).all()]


async def stop_suspended_sessions(
    kill: KillSwitch, *, actor: str, agent_id: str | None = None
) -> SuspendOutcome:
    """Stop the open sessions of suspended agents that this node can stop.

    A session charging on a charge point connected to another node is left to
    that node (its watcher finds it); one not yet charging is released from
    any node. Audited when anything was attempted.
    """
    outcome = SuspendOutcome(None)
    for session_id, owner, charge_point_id, transaction_ref in await open_sessions_of_suspended(
        kill, agent_id
    ):
        log = _log.bind(agent_id=owner, session_id=session_id)
        if transaction_ref is not None and not kill.here.is_connected(charge_point_id):
            outcome.sessions_elsewhere.append(session_id)
            continue
        try:
            await _mark_stop_reason(kill, session_id)
            await kill.sessions.stop(owner, session_id)
        except ChargepayError as exc:
            log.warning("kill_switch.stop_failed", code=exc.code, detail=exc.detail)
            outcome.sessions_failed.append(session_id)
        except Exception:  # one session's failure must not spare the others
            log.exception("kill_switch.stop_crashed")
            outcome.sessions_failed.append(session_id)
        else:
            log.info("kill_switch.session_stopping", actor=actor)
            outcome.sessions_stopping.append(session_id)
    if outcome.sessions_stopping or outcome.sessions_failed:
        async with kill.db.session() as session:
            await audit.record(
                session,
                actor=actor,
                action="agent.sessions_stopped",
                subject=agent_id,
                data={"stopping": outcome.sessions_stopping, "failed": outcome.sessions_failed},
            )
    return outcome


async def suspend_agent(
    kill: KillSwitch, agent_id: str, *, reason: str, actor: str
) -> SuspendOutcome:
    """Suspend now (committed before anything else), then stop its open sessions.

    A session that cannot be stopped right now is reported in
    ``sessions_failed`` (the watcher tries again) or ``sessions_elsewhere``.
    """
    async with SqlUnitsOfWork(kill.db)() as uow:
        agent = await agent_registry.suspend(uow, agent_id, reason=reason, actor=actor)
    outcome = await stop_suspended_sessions(kill, actor=actor, agent_id=agent_id)
    outcome.agent = agent
    return outcome


async def watch(
    kill: KillSwitch,
    *,
    interval_s: float = WATCH_INTERVAL_S,
    until: asyncio.Event | None = None,
) -> None:
    """On each node, until ``until`` is set (or cancelled): stop suspended agents'
    sessions, purge old nonces.

    This is what makes a suspension from the CLI, or from another node, stop
    charging on the charge points connected here. A failing sweep is logged
    and tried again. Once ``until`` is set it returns after the sweep in
    flight. Safe to cancel.
    """
    until = until or asyncio.Event()
    sweeps = 0
    while not until.is_set():
        try:
            await stop_suspended_sessions(kill, actor=WATCHER)
            if sweeps % NONCE_PURGE_EVERY == 0:
                await purge_nonces(kill)
        except (ChargepayError, SQLAlchemyError, OSError) as exc:
            _log.warning("kill_switch.sweep_failed", error=type(exc).__name__)
        sweeps += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await until.wait()


async def purge_nonces(kill: KillSwitch) -> None:
    """Forget nonces no signature can reuse any more (past their expiry)."""
    async with kill.db.session() as session:
        await session.execute(delete(NonceRow).where(NonceRow.expires_at < utcnow()))


async def _mark_stop_reason(kill: KillSwitch, session_id: str) -> None:
    """Say why on the session before it stops (the stop keeps a reason already set)."""
    from station.store.payments import SessionRow

    async with kill.db.session() as session:
        await session.execute(
            update(SessionRow)
            .where(SessionRow.session_id == session_id, SessionRow.stop_reason.is_(None))
            .values(stop_reason=STOP_REASON)
        )


def _pause_view(switch: SwitchRow | None) -> dict[str, Any]:
    if switch is None:
        return {"paused": False, "reason": None, "actor": None, "changed_at": None}
    return {
        "paused": switch.on,
        "reason": switch.reason,
        "actor": switch.actor,
        "changed_at": switch.changed_at,
    }


async def pause_status(kill: KillSwitch) -> dict[str, Any]:
    async with kill.db.reader() as session:
        return _pause_view(await session.get(SwitchRow, PAUSE))


async def set_pause(kill: KillSwitch, *, on: bool, reason: str, actor: str) -> dict[str, Any]:
    """Turn the operator-wide pause of new authorisations on or off (audited)."""
    async with kill.db.session() as session:
        switch = await session.get(SwitchRow, PAUSE, with_for_update=True)
        if switch is None:
            switch = SwitchRow(name=PAUSE, on=on, reason=reason, actor=actor)
            session.add(switch)
        switch.on, switch.reason, switch.actor, switch.changed_at = on, reason, actor, utcnow()
        await audit.record(
            session,
            actor=actor,
            action="operator.paused" if on else "operator.resumed",
            subject=None,
            data={"reason": reason},
        )
        await session.flush()
        view = _pause_view(switch)
    (_log.warning if on else _log.info)("operator.pause_changed", paused=on, actor=actor)
    return view
