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
from datetime import UTC, datetime
from typing import Any, Protocol

from station.errors import ChargepayError
from station.logs import get_logger
from station.services import agents as agent_registry
from station.services.limits import PAUSE
from station.services.repositories.agents import Agent
from station.services.repositories.sessions import OpenSession
from station.services.repositories.switches import Switch
from station.services.unit_of_work import UnitOfWorkFactory

_log = get_logger(__name__)
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


@dataclass
class SuspendOutcome:
    agent: Agent | None
    sessions_stopping: list[str] = field(default_factory=list)
    # Charging on a charge point connected to another node: that node's watcher stops it.
    sessions_elsewhere: list[str] = field(default_factory=list)
    sessions_failed: list[str] = field(default_factory=list)


def _pause_view(switch: Switch | None) -> dict[str, Any]:
    if switch is None:
        return {"paused": False, "reason": None, "actor": None, "changed_at": None}
    return {
        "paused": switch.on,
        "reason": switch.reason,
        "actor": switch.actor,
        "changed_at": switch.changed_at,
    }


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """Suspensions and the operator-wide pause, over the unit-of-work port.

    Given by the composition root: `units` (the persistence port), `sessions`
    (the payments side's `SessionService`, which stops a session) and `here`
    (which charge points are connected to this very node).
    """

    units: UnitOfWorkFactory
    sessions: SessionStopper
    here: ConnectedHere

    async def open_sessions_of_suspended(self, agent_id: str | None = None) -> list[OpenSession]:
        """Open sessions (authorized, charging) of suspended agents, oldest first."""
        async with self.units.reader() as uow:
            return await uow.sessions.open_of_suspended_agents(agent_id)

    async def stop_suspended_sessions(
        self, *, actor: str, agent_id: str | None = None
    ) -> SuspendOutcome:
        """Stop the open sessions of suspended agents that this node can stop.

        A session charging on a charge point connected to another node is left to
        that node (its watcher finds it); one not yet charging is released from
        any node. Audited when anything was attempted.
        """
        outcome = SuspendOutcome(None)
        for open_session in await self.open_sessions_of_suspended(agent_id):
            session_id = open_session.session_id
            log = _log.bind(agent_id=open_session.agent_id, session_id=session_id)
            here = self.here.is_connected(open_session.charge_point_id)
            if open_session.transaction_ref is not None and not here:
                outcome.sessions_elsewhere.append(session_id)
                continue
            try:
                async with self.units() as uow:  # say why before it stops (a set reason stays)
                    await uow.sessions.mark_stop_reason(session_id, STOP_REASON)
                await self.sessions.stop(open_session.agent_id, session_id)
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
            async with self.units() as uow:
                await uow.audit.record(
                    actor=actor,
                    action="agent.sessions_stopped",
                    subject=agent_id,
                    data={"stopping": outcome.sessions_stopping, "failed": outcome.sessions_failed},
                )
        return outcome

    async def suspend_agent(self, agent_id: str, *, reason: str, actor: str) -> SuspendOutcome:
        """Suspend now (committed before anything else), then stop its open sessions.

        A session that cannot be stopped right now is reported in
        ``sessions_failed`` (the watcher tries again) or ``sessions_elsewhere``.
        """
        async with self.units() as uow:
            agent = await agent_registry.suspend(uow, agent_id, reason=reason, actor=actor)
        outcome = await self.stop_suspended_sessions(actor=actor, agent_id=agent_id)
        outcome.agent = agent
        return outcome

    async def watch(
        self, *, interval_s: float = WATCH_INTERVAL_S, until: asyncio.Event | None = None
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
                await self.stop_suspended_sessions(actor=WATCHER)
                if sweeps % NONCE_PURGE_EVERY == 0:
                    await self.purge_nonces()
            except (ChargepayError, OSError) as exc:  # the store's failures are StoreUnavailable
                _log.warning("kill_switch.sweep_failed", error=type(exc).__name__)
            except Exception:  # anything else: a bug, but the next sweep still runs
                _log.exception("kill_switch.sweep_crashed")
            sweeps += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await until.wait()

    async def purge_nonces(self) -> None:
        """Forget nonces no signature can reuse any more (past their expiry)."""
        async with self.units() as uow:
            await uow.nonces.purge_expired(datetime.now(UTC))

    async def pause_status(self) -> dict[str, Any]:
        async with self.units.reader() as uow:
            return _pause_view(await uow.switches.get(PAUSE))

    async def set_pause(self, *, on: bool, reason: str, actor: str) -> dict[str, Any]:
        """Turn the operator-wide pause of new authorisations on or off (audited)."""
        switch = Switch(PAUSE, on, reason, actor, datetime.now(UTC))
        async with self.units() as uow:
            await uow.switches.put(switch)
            await uow.audit.record(
                actor=actor,
                action="operator.paused" if on else "operator.resumed",
                subject=None,
                data={"reason": reason},
            )
        (_log.warning if on else _log.info)("operator.pause_changed", paused=on, actor=actor)
        return _pause_view(switch)


# Module-level entry points (the API and the app call these with the root's KillSwitch).


async def open_sessions_of_suspended(
    kill: KillSwitch, agent_id: str | None = None
) -> list[OpenSession]:
    return await kill.open_sessions_of_suspended(agent_id)


async def stop_suspended_sessions(
    kill: KillSwitch, *, actor: str, agent_id: str | None = None
) -> SuspendOutcome:
    return await kill.stop_suspended_sessions(actor=actor, agent_id=agent_id)


async def suspend_agent(
    kill: KillSwitch, agent_id: str, *, reason: str, actor: str
) -> SuspendOutcome:
    return await kill.suspend_agent(agent_id, reason=reason, actor=actor)


async def watch(
    kill: KillSwitch, *, interval_s: float = WATCH_INTERVAL_S, until: asyncio.Event | None = None
) -> None:
    await kill.watch(interval_s=interval_s, until=until)


async def purge_nonces(kill: KillSwitch) -> None:
    await kill.purge_nonces()


async def pause_status(kill: KillSwitch) -> dict[str, Any]:
    return await kill.pause_status()


async def set_pause(kill: KillSwitch, *, on: bool, reason: str, actor: str) -> dict[str, Any]:
    return await kill.set_pause(on=on, reason=reason, actor=actor)
