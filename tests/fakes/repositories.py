"""In-memory repositories over a unit's working tables (`tests.fakes.unit_of_work`).

Each works on ``tables[<name>]``, a dict the unit copied from the committed
state when it began; the unit swaps it in on commit or drops it on rollback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from station.domain.negotiation import PricingPolicy
from station.domain.session import PaymentStatus, Session, SessionStatus
from station.domain.tariff import Tariff
from station.errors import NotFound
from station.services.repositories.agents import Agent
from station.services.repositories.audit import Verification
from station.services.repositories.charge_points import ChargePoint
from station.services.repositories.negotiations import LiveCount, Negotiation, Offer
from station.services.repositories.reports import (
    Anomaly,
    ChargePointSummary,
    MeterSample,
    MoneyFigures,
    SessionFilter,
)
from station.services.repositories.sessions import (
    OpenSession,
    PendingSettlement,
    Quiet,
    Unstarted,
    Unstopped,
)
from station.services.repositories.spend import Spend
from station.services.repositories.switches import Switch
from station.services.unit_of_work import AlreadyExists
from station.store.audit import GENESIS, AuditEntry, canonical_json, row_hash, verify_entries
from station.store.repositories.audit import verification_of

Tables = dict[str, dict[Any, Any]]


class FakeAgents:
    def __init__(self, tables: Tables) -> None:
        self._rows: dict[str, Agent] = tables.setdefault("agents", {})

    async def get(self, agent_id: str, *, lock: bool = False) -> Agent | None:
        return self._rows.get(agent_id)

    async def list(self, *, status: str | None = None, limit: int | None = None) -> list[Agent]:
        rows = [a for a in self._rows.values() if status is None or a.status == status]
        return sorted(rows, key=lambda a: (a.created_at, a.agent_id))[:limit]

    async def add(self, agent: Agent) -> None:
        if agent.agent_id in self._rows:
            raise AlreadyExists("agent_id already exists", key="agent_id")
        self._rows[agent.agent_id] = agent

    async def save(self, agent: Agent) -> None:
        if agent.agent_id not in self._rows:
            raise NotFound(f"no agent {agent.agent_id}")
        self._rows[agent.agent_id] = agent


class FakeAuditLog:
    def __init__(self, tables: Tables) -> None:
        self._rows: dict[int, AuditEntry] = tables.setdefault("audit", {})

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
        prev = self._rows[seq - 1].hash if seq > 1 else GENESIS
        at = datetime.now(UTC)
        digest = row_hash(seq, at, actor, action, subject, payload, prev)
        self._rows[seq] = AuditEntry(seq, at, actor, action, subject, payload, prev, digest)

    async def export_lines(self, *, after_seq: int = 0) -> AsyncIterator[str]:
        for seq, entry in sorted(self._rows.items()):
            if seq > after_seq:
                yield canonical_json(entry.to_json()) + "\n"

    async def verify(self, *, expected_head: str | None = None) -> Verification:
        entries = [entry for _, entry in sorted(self._rows.items())]
        return verification_of(verify_entries(entries, expected_head=expected_head))


DEFAULT_KEY = "*"
_OPEN = (SessionStatus.AUTHORIZED, SessionStatus.CHARGING)


class FakeSessions:
    """Sessions as the aggregate values they are (a settlement intent rides along)."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
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

    async def open_of_suspended_agents(self, agent_id: str | None = None) -> list[OpenSession]:
        agents: dict[str, Agent] = self._tables.setdefault("agents", {})
        rows = [
            r
            for r in self._rows.values()
            if r.status in _OPEN
            and (agent_id is None or r.agent_id == agent_id)
            and r.agent_id in agents
            and agents[r.agent_id].status == "suspended"
        ]
        rows.sort(key=lambda r: r.created_at)
        return [
            OpenSession(r.session_id, r.agent_id, r.charge_point_id, r.metering.transaction_ref)
            for r in rows
        ]

    async def mark_stop_reason(self, session_id: str, reason: str) -> None:
        row = self._rows.get(session_id)
        if row is not None and row.stop_reason is None:
            self._rows[session_id] = replace(row, stop_reason=reason)

    async def spent_by_payer_method(
        self, agent_id: str, payer_method: str, *, since: datetime
    ) -> Decimal:
        return sum(
            (
                (r.captured if r.captured is not None else r.cap).amount
                for r in self._rows.values()
                if r.agent_id == agent_id
                and r.payment.payer_method == payer_method
                and r.created_at >= since
                and r.status not in _FREES_NEGOTIATION  # ended unpaid
            ),
            Decimal(0),
        )

    async def live_session_of_negotiation(self, negotiation_id: str) -> str | None:
        for row in self._rows.values():
            if row.negotiation_id == negotiation_id and row.status not in _FREES_NEGOTIATION:
                return row.session_id
        return None

    async def record_anomaly(
        self,
        session: Session,
        *,
        kind: str,
        detail: str,
        transaction_id: int | None,
        at: datetime | None,
    ) -> None:
        anomalies = self._tables.setdefault("anomalies", {})
        anomalies[len(anomalies) + 1] = (session.charge_point_id, transaction_id, kind, detail, at)

    async def pending_settlements(self) -> list[PendingSettlement]:
        found = [
            PendingSettlement(s.session_id, s.settlement.node_id, s.settlement.created_at)
            for s in self._rows.values()
            if s.settlement is not None and not s.settlement.done
        ]
        return sorted(found, key=lambda p: p.created_at)

    async def unstarted(self, created_before: datetime) -> list[Unstarted]:
        return [
            Unstarted(s.session_id, s.charge_point_id, s.created_at)
            for s in self._rows.values()
            if s.never_started and s.payment.reference is not None and s.created_at < created_before
        ]

    async def ended_unsettled(self, updated_before: datetime) -> list[str]:
        return [
            s.session_id
            for s in self._rows.values()
            if s.status is SessionStatus.STOPPING
            and s.metering.stopped_at is not None
            and s.updated_at < updated_before
        ]

    async def quiet(self, updated_before: datetime) -> list[Quiet]:
        seen = self._tables.get("charge_points", {})
        return [
            Quiet(
                s.session_id,
                s.charge_point_id,
                getattr(seen.get(s.charge_point_id), "last_seen", None),
            )
            for s in self._rows.values()
            if s.status in (SessionStatus.CHARGING, SessionStatus.STOPPING)
            and s.updated_at < updated_before
        ]

    async def unstopped(self, charge_point_id: str | None = None) -> list[Unstopped]:
        return [
            Unstopped(
                s.session_id, s.charge_point_id, s.metering.transaction_ref, s.stop_requested_at
            )
            for s in self._rows.values()
            if s.metering.transaction_ref is not None
            and s.status is SessionStatus.STOPPING
            and s.metering.stopped_at is None
            and charge_point_id in (None, s.charge_point_id)
        ]

    async def ended_with_open_hold(self) -> list[str]:
        return [
            s.session_id
            for s in self._rows.values()
            if s.status.final
            and s.payment.status is PaymentStatus.REQUIRES_CAPTURE
            and s.payment.reference is not None
        ]

    async def holds_in_doubt(self, created_before: datetime) -> list[str]:
        return [
            s.session_id
            for s in self._rows.values()
            if s.payment.reference is None
            and s.payment.status.in_doubt
            and s.created_at < created_before
        ]


def _last_seen(charge_points: dict[Any, Any], charge_point_id: str) -> datetime | None:
    seen = getattr(charge_points.get(charge_point_id), "last_seen", None)
    return seen if isinstance(seen, datetime) else None


# A failed or cancelled session frees its negotiation (the SQL partial unique index).
_FREES_NEGOTIATION = frozenset({SessionStatus.FAILED, SessionStatus.CANCELLED})


class FakeSwitches:
    def __init__(self, tables: Tables) -> None:
        self._rows: dict[str, Switch] = tables.setdefault("switches", {})

    async def get(self, name: str, *, lock: bool = False) -> Switch | None:
        return self._rows.get(name)

    async def put(self, switch: Switch) -> None:
        self._rows[switch.name] = switch


class FakeSpendLedger:
    def __init__(self, tables: Tables) -> None:
        self._rows: dict[str, Spend] = tables.setdefault("spend", {})

    async def get(self, session_id: str) -> Spend | None:
        return self._rows.get(session_id)

    async def add(self, spend: Spend) -> None:
        if spend.session_id in self._rows:
            raise AlreadyExists("session_id already exists", key="session_id")
        self._rows[spend.session_id] = spend

    async def save(self, spend: Spend) -> None:
        old = self._rows.get(spend.session_id)
        if old is None:
            raise NotFound(f"no spend entry for session {spend.session_id}")
        self._rows[spend.session_id] = replace(
            old, amount=spend.amount, status=spend.status, settled_at=spend.settled_at
        )

    async def total(
        self, agent_id: str, *, since: datetime, excluding: str | None = None
    ) -> Decimal:
        return sum(
            (
                s.amount
                for s in self._rows.values()
                if s.agent_id == agent_id and s.created_at >= since and s.session_id != excluding
            ),
            Decimal(0),
        )


class FakeNonces:
    def __init__(self, tables: Tables) -> None:
        self._rows: dict[tuple[str, str], datetime] = tables.setdefault("nonces", {})

    async def add(self, agent_id: str, nonce: str, *, expires_at: datetime) -> None:
        if (agent_id, nonce) in self._rows:
            raise AlreadyExists("nonce already exists", key="nonce")
        self._rows[(agent_id, nonce)] = expires_at

    async def purge_expired(
        self, now: datetime, *, agent_id: str | None = None, limit: int | None = None
    ) -> int:
        expired = [
            key
            for key, expires_at in self._rows.items()
            if expires_at < now and (agent_id is None or key[0] == agent_id)
        ]
        if agent_id is not None and limit is not None:
            expired = expired[:limit]
        for key in expired:
            del self._rows[key]
        return len(expired)


class FakeNegotiations:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._rows: dict[str, Negotiation] = tables.setdefault("negotiations", {})

    async def get(self, negotiation_id: str, *, lock: bool = False) -> Negotiation | None:
        return self._rows.get(negotiation_id)

    async def add(self, negotiation: Negotiation) -> None:
        if negotiation.negotiation_id in self._rows:
            raise AlreadyExists("negotiation_id already exists", key="negotiation_id")
        self._rows[negotiation.negotiation_id] = negotiation

    async def save(self, negotiation: Negotiation) -> None:
        if negotiation.negotiation_id not in self._rows:
            raise NotFound(f"no negotiation {negotiation.negotiation_id}")
        self._rows[negotiation.negotiation_id] = negotiation

    async def live(self, agent_id: str, *, statuses: tuple[str, ...], now: datetime) -> LiveCount:
        sessions: dict[str, Session] = self._tables.setdefault("sessions", {})
        accepted = {s.negotiation_id for s in sessions.values()}
        live = [
            n.expires_at
            for n in self._rows.values()
            if n.agent_id == agent_id
            and n.status in statuses
            and n.expires_at > now
            and n.negotiation_id not in accepted
        ]
        return LiveCount(len(live), min(live) if live else None)


class FakeOffers:
    def __init__(self, tables: Tables) -> None:
        self._negotiations: dict[str, Negotiation] = tables.setdefault("negotiations", {})
        self._rows: dict[str, Offer] = tables.setdefault("offers", {})

    async def get(self, offer_id: str) -> Offer | None:
        return self._rows.get(offer_id)

    async def add(self, offer: Offer) -> None:
        if offer.negotiation_id not in self._negotiations:
            raise NotFound(f"no negotiation {offer.negotiation_id}")
        if offer.offer_id in self._rows:
            raise AlreadyExists("offer_id already exists", key="offer_id")
        self._rows[offer.offer_id] = offer


class FakeChargePoints:
    def __init__(self, tables: Tables) -> None:
        self._rows: dict[str, ChargePoint] = tables.setdefault("charge_points", {})

    async def get(self, charge_point_id: str) -> ChargePoint | None:
        return self._rows.get(charge_point_id)


class FakePricing:
    """Tables ``policies`` and ``tariffs``, keyed by charge point id, the default under "*"."""

    def __init__(self, tables: Tables) -> None:
        self._policies: dict[str, PricingPolicy] = tables.setdefault("policies", {})
        self._tariffs: dict[str, Tariff] = tables.setdefault("tariffs", {})

    async def policy(self, charge_point_id: str | None = None) -> PricingPolicy | None:
        return self._policies.get(charge_point_id or DEFAULT_KEY) or self._policies.get(DEFAULT_KEY)

    async def tariff(self, charge_point_id: str | None = None) -> Tariff | None:
        return self._tariffs.get(charge_point_id or DEFAULT_KEY) or self._tariffs.get(DEFAULT_KEY)

    async def tariffs(self) -> dict[str, Tariff]:
        return dict(self._tariffs)

    async def set_tariff(self, tariff: Tariff, charge_point_id: str | None = None) -> None:
        self._tariffs[charge_point_id or DEFAULT_KEY] = tariff

    async def delete_tariff(self, charge_point_id: str | None = None) -> bool:
        return self._tariffs.pop(charge_point_id or DEFAULT_KEY, None) is not None

    async def set_policy(self, policy: PricingPolicy, charge_point_id: str | None = None) -> None:
        self._policies[charge_point_id or DEFAULT_KEY] = policy


class FakeReports:
    """The figures, computed from the fake's charge points and `Session` values
    (no connectors: the fake's charge points have none)."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _sessions(self) -> list[Session]:
        return list(self._tables.setdefault("sessions", {}).values())

    async def sessions(self, where: SessionFilter, *, limit: int) -> list[Session]:
        rows = [
            s
            for s in self._sessions()
            if (where.agent_id is None or s.agent_id == where.agent_id)
            and (where.charge_point_id is None or s.charge_point_id == where.charge_point_id)
            and (where.status is None or s.status.value == where.status)
            and (where.since is None or s.created_at >= where.since)
            and (where.until is None or s.created_at < where.until)
        ]
        return sorted(rows, key=lambda s: s.created_at, reverse=True)[:limit]

    async def meter_samples(self, transaction_id: int, *, limit: int) -> list[MeterSample]:
        return []  # the fake meters nothing (charging's tables are not faked)

    async def anomalies(self, transaction_id: int) -> list[Anomaly]:
        return []

    async def charge_points(self) -> list[ChargePointSummary]:
        points: dict[str, ChargePoint] = self._tables.setdefault("charge_points", {})
        return [
            ChargePointSummary(p.charge_point_id, p.connected, p.ocpp_version, (), None)
            for _, p in sorted(points.items())
            if p.removed_at is None
        ]

    async def connected_by_version(self) -> dict[str | None, int]:
        counts: dict[str | None, int] = {}
        points: dict[str, ChargePoint] = self._tables.setdefault("charge_points", {})
        for p in points.values():
            if p.connected:
                counts[p.ocpp_version] = counts.get(p.ocpp_version, 0) + 1
        return counts

    async def sessions_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._sessions():
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        return counts

    @staticmethod
    def _sum(into: dict[str, Decimal], currency: str, amount: Decimal) -> None:
        into[currency] = into.get(currency, Decimal(0)) + amount

    async def money_by_hold(self) -> MoneyFigures:
        figures = MoneyFigures()
        for r in self._sessions():
            captured = r.captured.amount if r.captured is not None else None
            status = r.payment.status.value
            if status == "requires_capture" and not r.status.final:
                self._sum(figures.held, r.currency, r.cap.amount)
            if captured is not None:
                self._sum(figures.captured, r.currency, captured)
            if (
                r.status.final
                and r.payment.reference is not None
                and status in ("succeeded", "canceled")
            ):
                self._sum(figures.released, r.currency, r.cap.amount - (captured or 0))
        return figures

    async def money_by_session(self) -> MoneyFigures:
        figures = MoneyFigures()
        for r in self._sessions():
            captured = r.captured.amount if r.captured is not None else None
            has_hold = r.payment.reference is not None
            if r.status.value in ("authorized", "charging", "stopping") and has_hold:
                self._sum(figures.held, r.currency, r.cap.amount)
            if r.status.value == "settled" and captured is not None:
                self._sum(figures.captured, r.currency, captured)
            if r.status.value in ("settled", "cancelled") and has_hold:
                self._sum(figures.released, r.currency, r.cap.amount - (captured or 0))
        return figures
