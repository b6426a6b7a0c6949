"""The agent registry: register, look up, suspend and resume paying agents.

Every change writes an audit row in the same unit of work (the persistence
port, `station.services.unit_of_work`: these functions take an open unit). Suspension here
only flips the agent's status (its next request is refused at once); stopping
its running sessions is the kill switch's job (`station.services.kill_switch`).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from station.domain.limits import LimitsError, SpendingLimits
from station.domain.money import MoneyError, minor_unit_exponent, parse_decimal
from station.errors import Conflict, NotFound, ValidationError
from station.logs import get_logger
from station.services.repositories.agents import Agent
from station.services.unit_of_work import UnitOfWork

_log = get_logger(__name__)
MAX_WINDOW_HOURS = 24 * 366


def new_agent_id() -> str:
    return f"agt_{secrets.token_hex(8)}"


def check_public_key(text: str) -> str:
    """Base64 of exactly 32 raw bytes (an Ed25519 public key); returns it normalised."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError("public_key is not valid base64") from exc
    if len(raw) != 32:
        raise ValidationError(f"public_key must be 32 raw bytes in base64, got {len(raw)}")
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class NewAgent:
    name: str
    public_key: str
    currency: str
    limit_per_session: Decimal | str
    limit_per_window: Decimal | str
    window_hours: int = 24
    owner: str | None = None
    allowed_charge_points: Sequence[str] | None = None


def _amount(value: Decimal | str, currency: str, field: str) -> Decimal:
    try:
        amount = parse_decimal(value, places=minor_unit_exponent(currency))
    except MoneyError as exc:
        raise ValidationError(f"{field}: {exc}") from exc
    if amount < 0 or amount >= Decimal("1e12"):
        raise ValidationError(f"{field} must be between 0 and 10^12")
    return amount


def _checked(new: NewAgent) -> dict[str, Any]:
    """The agent's fields, validated and normalised; ValidationError on bad input."""
    name = new.name.strip()
    if not name or len(name) > 200:
        raise ValidationError("name must be 1–200 characters")
    if new.owner is not None and len(new.owner) > 200:
        raise ValidationError("owner must be at most 200 characters")
    public_key = check_public_key(new.public_key)
    try:
        limits = SpendingLimits(
            currency=new.currency,
            limit_per_session=_amount(new.limit_per_session, new.currency, "limit_per_session"),
            limit_per_window=_amount(new.limit_per_window, new.currency, "limit_per_window"),
            window_hours=new.window_hours,
        )
    except (MoneyError, LimitsError) as exc:
        raise ValidationError(str(exc)) from exc
    if limits.limit_per_session > limits.limit_per_window:
        raise ValidationError(
            f"limit_per_session ({limits.limit_per_session}) is above limit_per_window "
            f"({limits.limit_per_window}): no session could ever hold it; "
            "lower the first or raise the second"
        )
    if new.window_hours > MAX_WINDOW_HOURS:
        raise ValidationError(f"window_hours must be at most {MAX_WINDOW_HOURS}")
    allowed = list(new.allowed_charge_points) if new.allowed_charge_points is not None else None
    if allowed is not None and any(not cp or len(cp) > 64 for cp in allowed):
        raise ValidationError("allowed_charge_points holds charge point ids of 1–64 characters")
    return {
        "name": name,
        "owner": new.owner,
        "public_key": public_key,
        "limit_per_session": limits.limit_per_session,
        "limit_per_window": limits.limit_per_window,
        "window_hours": limits.window_hours,
        "allowed_charge_points": tuple(allowed) if allowed is not None else None,
    }


async def register(uow: UnitOfWork, new: NewAgent, *, actor: str) -> Agent:
    """Validate and store a new agent (status ``active``); ValidationError on bad input."""
    checked = _checked(new)
    agent = Agent(
        agent_id=new_agent_id(),
        currency=new.currency,
        status="active",
        suspended_reason=None,
        created_at=datetime.now(UTC),
        **checked,
    )
    await uow.agents.add(agent)
    await uow.audit.record(
        actor=actor,
        action="agent.registered",
        subject=agent.agent_id,
        data={**checked, "currency": new.currency},
    )
    _log.info("agent.registered", agent_id=agent.agent_id, actor=actor)
    return agent


async def get(uow: UnitOfWork, agent_id: str, *, lock: bool = False) -> Agent:
    agent = await uow.agents.get(agent_id, lock=lock)
    if agent is None:
        raise NotFound(f"no agent {agent_id}")
    return agent


async def list_all(uow: UnitOfWork, *, status: str | None = None) -> list[Agent]:
    return await uow.agents.list(status=status)


UPDATABLE = frozenset(
    {"name", "owner", "public_key", "limit_per_session", "limit_per_window", "window_hours",
     "allowed_charge_points"}
)  # fmt: skip


NULLABLE = frozenset({"owner", "allowed_charge_points"})


async def update(uow: UnitOfWork, agent_id: str, changes: dict[str, Any], *, actor: str) -> Agent:
    """Change an agent's name, owner, key (rotation), limits or charge points; audited.

    The currency stays: the spend ledger counts in it. Keys absent from
    `changes` stay as they are; ``allowed_charge_points: None`` allows all.
    """
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValidationError(f"cannot change {', '.join(sorted(unknown))}")
    required = [k for k, v in changes.items() if v is None and k not in NULLABLE]
    if required:
        raise ValidationError(f"{', '.join(sorted(required))} cannot be null")
    agent = await get(uow, agent_id, lock=True)
    merged = NewAgent(
        name=changes.get("name", agent.name),
        public_key=changes.get("public_key", agent.public_key),
        currency=agent.currency,
        limit_per_session=changes.get("limit_per_session", agent.limit_per_session),
        limit_per_window=changes.get("limit_per_window", agent.limit_per_window),
        window_hours=changes.get("window_hours", agent.window_hours),
        owner=changes.get("owner", agent.owner),
        allowed_charge_points=changes.get("allowed_charge_points", agent.allowed_charge_points),
    )
    checked = _checked(merged)
    agent = replace(agent, **{name: checked[name] for name in changes})
    await uow.agents.save(agent)
    await uow.audit.record(
        actor=actor,
        action="agent.updated",
        subject=agent_id,
        data={name: checked[name] for name in changes},
    )
    _log.info("agent.updated", agent_id=agent_id, actor=actor, fields=sorted(changes))
    return agent


async def suspend(uow: UnitOfWork, agent_id: str, *, reason: str, actor: str) -> Agent:
    """Mark the agent suspended (its requests get 403 at once) and audit who and why."""
    agent = await get(uow, agent_id, lock=True)
    was = agent.status
    agent = replace(agent, status="suspended", suspended_reason=reason)
    await uow.agents.save(agent)
    await uow.audit.record(
        actor=actor,
        action="agent.suspended",
        subject=agent_id,
        data={"reason": reason, "previous_status": was},
    )
    _log.warning("agent.suspended", agent_id=agent_id, actor=actor, reason=reason)
    return agent


async def resume(uow: UnitOfWork, agent_id: str, *, actor: str, reason: str = "") -> Agent:
    agent = await get(uow, agent_id, lock=True)
    if agent.status == REMOVED:
        raise Conflict(f"agent {agent_id} was removed; register its key again as a new agent")
    was = agent.status
    agent = replace(agent, status="active", suspended_reason=None)
    await uow.agents.save(agent)
    await uow.audit.record(
        actor=actor,
        action="agent.resumed",
        subject=agent_id,
        data={"reason": reason, "previous_status": was},
    )
    _log.info("agent.resumed", agent_id=agent_id, actor=actor)
    return agent


REMOVED = "removed"


async def remove(uow: UnitOfWork, agent_id: str, *, reason: str, actor: str) -> Agent:
    """Soft removal: the row and its history stay, every request is refused from now on.

    Refused (409) while one of the agent's sessions is live: stop it first, so no
    hold is left without anyone to settle it with.
    """
    agent = await get(uow, agent_id, lock=True)
    if agent.status == REMOVED:
        return agent
    live = await uow.sessions.live_session_of_agent(agent_id)
    if live is not None:
        raise Conflict(f"agent {agent_id} has a live session {live}; stop it first")
    was = agent.status
    agent = replace(agent, status=REMOVED, suspended_reason=reason)
    await uow.agents.save(agent)
    await uow.audit.record(
        actor=actor,
        action="agent.removed",
        subject=agent_id,
        data={"reason": reason, "previous_status": was},
    )
    _log.warning("agent.removed", agent_id=agent_id, actor=actor, reason=reason)
    return agent
