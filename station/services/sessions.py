"""Sessions as the agent sees them (PROTOCOL §4): view, stop, receipt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from station.domain.money import Money
from station.domain.session import Session, SessionStatus
from station.domain.session_actions import Settle, StopCharging
from station.domain.session_events import StopRequested
from station.errors import NotFound, NotSettled
from station.logs import get_logger
from station.payments.receipts import ReceiptSigner, payment_receipt, refund_receipt
from station.services import session_effects
from station.services.offers import rfc3339
from station.services.ports import ChargePointCommands
from station.services.session_events import SessionEvents
from station.services.settlement import SettlementService
from station.store.db import Database
from station.store.payments import SessionRow
from station.store.repositories.sessions import SqlSessions, session_of

_log = get_logger(__name__)
AGENT_STOP = "agent_requested"
OPERATOR_STOP = "operator_requested"


def _when(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


def session_view(session: Session | SessionRow) -> dict[str, Any]:
    """The session as the agent sees it (a stored row is read as its aggregate)."""
    s = session if isinstance(session, Session) else session_of(session)

    def money(value: Money | None) -> str | None:
        return None if value is None else value.to_wire()

    return {
        "session_id": s.session_id,
        "status": s.status.value,
        "charge_point_id": s.charge_point_id,
        "evse_id": s.evse_id,
        "id_token": s.id_token,
        "tariff": dict(s.tariff_doc),
        "cap": money(s.cap),
        "currency": s.currency,
        "energy_kwh": str((s.metering.energy_wh / 1000).quantize(Decimal("0.001"))),
        "cost": money(s.cost),
        "captured": money(s.captured),
        "started_at": _when(s.metering.started_at),
        "stopped_at": _when(s.metering.stopped_at),
        "stop_reason": s.stop_reason,
        "detail": s.detail,
        "payment": {
            "provider": "stripe",
            "reference": s.payment.reference,
            "status": s.payment.status.value,
            "intent": s.payment.intent.value,
        },
    }


async def _read(db: Database, agent_id: str | None, session_id: str) -> Session:
    """The session; NotFound unless it is `agent_id`'s (None: the operator sees all)."""
    async with db.reader() as unit:
        session = await SqlSessions(unit).get(session_id)
    if session is None or (agent_id is not None and session.agent_id != agent_id):
        raise NotFound(f"no session {session_id}")
    return session


class SessionReceipts:
    """The signed receipt of a settled session (PROTOCOL §4.3), for the agent and the
    final event stream's ``settled`` event; built before the services that hand it out."""

    def __init__(self, db: Database, signer: ReceiptSigner) -> None:
        self._db = db
        self._signer = signer

    async def receipt(self, agent_id: str | None, session_id: str) -> tuple[dict[str, Any], str]:
        """The signed receipt body and the Payment-Receipt header; NotSettled before."""
        session = await _read(self._db, agent_id, session_id)
        if session.status is not SessionStatus.SETTLED or session.settlement is None:
            raise NotSettled(f"session is {session.status}")
        return self._receipt(session)

    async def event(self, session_id: str) -> dict[str, Any]:
        body, header = await self.receipt(None, session_id)
        return {**body, "payment_receipt": header}

    def _receipt(self, s: Session) -> tuple[dict[str, Any], str]:
        assert s.captured is not None and s.payment.reference is not None
        assert s.settlement is not None
        cost = s.receipt_cost()
        m = s.metering
        body = {
            "session_id": s.session_id,
            "charge_point_id": s.charge_point_id,
            "energy_kwh": str((m.energy_wh / 1000).quantize(Decimal("0.001"))),
            "meter_start_wh": _int(m.meter_start_wh),
            "meter_stop_wh": _int(m.meter_stop_wh),
            "started_at": _when(m.started_at),
            "stopped_at": _when(m.stopped_at),
            "tariff": dict(s.tariff_doc),
            "cost_lines": [line.to_wire() for line in cost.lines],
            "total": cost.total.to_wire(),
            "cap": s.cap.to_wire(),
            "captured": s.captured.to_wire(),
            "released": (s.cap - s.captured).to_wire(),
            "currency": s.currency,
            "payment_reference": s.payment.reference,
            "intent": s.payment.intent.value,
        }
        settled_at = s.settlement.completed_at or s.updated_at
        if s.charged:
            # Charged the cap at once; the unused part went back as a refund, not a release.
            refunded = s.refunded or s.cap * 0
            body |= {
                "charged": s.cap.to_wire(),
                "refunded": refunded.to_wire(),
                "released": (s.cap * 0).to_wire(),
            }
            header = refund_receipt(
                s.payment.reference,
                settled_at,
                s.offer_id,
                s.cap.to_minor_units(),
                refunded.to_minor_units(),
            )
            return self._signer.sign(body), header
        header = payment_receipt(
            s.payment.reference, settled_at, s.offer_id, s.captured.rounded().to_minor_units()
        )
        return self._signer.sign(body), header


class SessionService:
    def __init__(
        self,
        db: Database,
        events: SessionEvents,
        settlement: SettlementService,
        receipts: SessionReceipts,
        commands: ChargePointCommands,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self.events = events
        self._settlement = settlement
        self._receipts = receipts
        self._commands = commands
        self._now = clock

    async def get(self, agent_id: str | None, session_id: str) -> dict[str, Any]:
        """The session; NotFound unless it is `agent_id`'s (None: the operator sees all)."""
        return session_view(await self._read(agent_id, session_id))

    async def _read(self, agent_id: str | None, session_id: str) -> Session:
        return await _read(self._db, agent_id, session_id)

    async def stop(
        self, agent_id: str | None, session_id: str, *, reason: str = AGENT_STOP
    ) -> dict[str, Any]:
        """Stop charging (RemoteStop / RequestStop), or end a session that never started.

        ``agent_id`` None: the operator, who may stop any session. A session already
        stopping whose transaction has not ended is asked to stop again (the first stop
        may never have reached the charge point); one that cannot be reached now raises
        ChargePointNotConnected (503) and the station keeps the stop: it is sent again on
        reconnect and on every reconciler pass.

        A session whose transaction the station has not heard of yet is not cancelled
        here: its charge point accepted the start (or its answer was lost) and may be
        charging with the start still in its queue (offline, or a slow answer). It
        becomes ``stopping``; its start, when it comes, is told to stop and what it
        delivered is billed; if none comes, the reconciler's start timeout (counted
        while the charge point is connected) releases the hold. A session whose hold
        request is still in flight is ended by that request (it sees the stop).
        The rule is `station.domain.decide` (a `StopRequested`).
        """
        await self._read(agent_id, session_id)  # NotFound before anything moves
        event = StopRequested(reason, self._now())
        _, session, actions = await session_effects.decide_locked(self._db, session_id, event)
        if session is None:
            raise NotFound(f"no session {session_id}")
        view = session_view(session)
        await session_effects.announce(
            session, [a for a in actions if not isinstance(a, StopCharging)], self.events
        )
        for action in actions:
            match action:
                case Settle(reason=why):
                    await self._settlement.settle(session_id, reason=why)
                case StopCharging(charge_point_id=cp, transaction_ref=ref, again=again):
                    _log.info("session.stop_requested", session_id=session_id, again=again)
                    await self._commands.stop_transaction(cp, ref)
                case _:
                    pass
        return view

    async def receipt(self, agent_id: str | None, session_id: str) -> tuple[dict[str, Any], str]:
        """The signed receipt body and the Payment-Receipt header; NotSettled before."""
        return await self._receipts.receipt(agent_id, session_id)


def _int(value: Decimal | None) -> int | None:
    return None if value is None else int(value)
