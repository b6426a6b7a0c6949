"""Sessions as the agent sees them (PROTOCOL §4): view, stop, receipt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from station.domain.money import Money
from station.domain.session import SessionStatus, advance
from station.errors import NotFound, NotSettled
from station.logs import get_logger
from station.payments.authorize import CHARGE
from station.payments.receipts import ReceiptSigner, payment_receipt, refund_receipt
from station.services.offers import rfc3339
from station.services.ports import ChargePointCommands
from station.services.session_events import SessionEvents
from station.services.settlement import SettlementService, cost_of
from station.store.db import Database
from station.store.payments import SessionRow, SettlementRow, locked_session

_log = get_logger(__name__)
AGENT_STOP = "agent_requested"
OPERATOR_STOP = "operator_requested"


def _when(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


def session_view(row: SessionRow) -> dict[str, Any]:
    def money(value: Decimal | None) -> str | None:
        return None if value is None else Money(value, row.currency).to_wire()

    return {
        "session_id": row.session_id,
        "status": row.status,
        "charge_point_id": row.charge_point_id,
        "evse_id": row.evse_id,
        "id_token": row.id_token,
        "tariff": row.tariff,
        "cap": money(row.cap),
        "currency": row.currency,
        "energy_kwh": str((row.energy_wh / 1000).quantize(Decimal("0.001"))),
        "cost": money(row.cost),
        "captured": money(row.captured),
        "started_at": _when(row.started_at),
        "stopped_at": _when(row.stopped_at),
        "stop_reason": row.stop_reason,
        "detail": row.detail,
        "payment": {
            "provider": "stripe",
            "reference": row.payment_reference,
            "status": row.payment_status,
            "intent": row.payment_intent,
        },
    }


class SessionService:
    def __init__(
        self,
        db: Database,
        events: SessionEvents,
        settlement: SettlementService,
        signer: ReceiptSigner,
        commands: Callable[[], ChargePointCommands | None],
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self.events = events
        self._settlement = settlement
        self._signer = signer
        self._commands = commands
        self._now = clock

    async def get(self, agent_id: str | None, session_id: str) -> dict[str, Any]:
        """The session; NotFound unless it is `agent_id`'s (None: the operator sees all)."""
        async with self._db.reader() as session:
            row = await session.get(SessionRow, session_id)
            if row is None or (agent_id is not None and row.agent_id != agent_id):
                raise NotFound(f"no session {session_id}")
            return session_view(row)

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
        """
        now = self._now()
        async with self._db.session() as session:
            row = await locked_session(session, session_id)
            if row is None or (agent_id is not None and row.agent_id != agent_id):
                raise NotFound(f"no session {session_id}")
            status = SessionStatus(row.status)
            if status.final:
                return session_view(row)
            moved = status is not SessionStatus.STOPPING
            if moved:
                row.status = advance(status, SessionStatus.STOPPING).value
                row.stop_reason = row.stop_reason or reason
                row.updated_at = now
            ref, charge_point_id = row.transaction_ref, row.charge_point_id
            # Ended already, or no hold yet (the hold request, or the reconciler looking
            # for its outcome, ends it): settle; a start still to come: wait for it.
            settle_now = row.stopped_at is not None or row.payment_reference is None
            # The stop timer runs from the stop, or from the start reported after it.
            if not settle_now and ref is not None and row.stop_requested_at is None:
                row.stop_requested_at = now
            view = session_view(row)
        if moved:
            self.events.publish(session_id, "status", {"status": view["status"]})
        commands = self._commands()
        if settle_now:
            await self._settlement.settle(session_id, reason=reason)
        elif ref is None:
            _log.info("session.stop_awaits_start", session_id=session_id)
        elif commands is not None:
            _log.info("session.stop_requested", session_id=session_id, again=not moved)
            await commands.stop_transaction(charge_point_id, ref)
        return view

    async def receipt(self, agent_id: str | None, session_id: str) -> tuple[dict[str, Any], str]:
        """The signed receipt body and the Payment-Receipt header; NotSettled before."""
        async with self._db.reader() as session:
            row = await session.get(SessionRow, session_id)
            if row is None or (agent_id is not None and row.agent_id != agent_id):
                raise NotFound(f"no session {session_id}")
            settlement = await session.get(SettlementRow, session_id)
            if row.status != SessionStatus.SETTLED or settlement is None:
                raise NotSettled(f"session is {row.status}")
            return self._receipt(row, settlement)

    async def receipt_event(self, session_id: str) -> dict[str, Any]:
        body, header = await self.receipt(None, session_id)
        return {**body, "payment_receipt": header}

    def _receipt(self, row: SessionRow, settlement: SettlementRow) -> tuple[dict[str, Any], str]:
        assert row.captured is not None and row.payment_reference is not None
        cost = cost_of(row, row.stopped_at or row.updated_at)
        captured = Money(row.captured, row.currency)
        body = {
            "session_id": row.session_id,
            "charge_point_id": row.charge_point_id,
            "energy_kwh": str((row.energy_wh / 1000).quantize(Decimal("0.001"))),
            "meter_start_wh": _int(row.meter_start_wh),
            "meter_stop_wh": _int(row.meter_stop_wh),
            "started_at": _when(row.started_at),
            "stopped_at": _when(row.stopped_at),
            "tariff": row.tariff,
            "cost_lines": [line.to_wire() for line in cost.lines],
            "total": cost.total.to_wire(),
            "cap": Money(row.cap, row.currency).to_wire(),
            "captured": captured.to_wire(),
            "released": (Money(row.cap, row.currency) - captured).to_wire(),
            "currency": row.currency,
            "payment_reference": row.payment_reference,
            "intent": row.payment_intent,
        }
        settled_at = settlement.completed_at or row.updated_at
        if row.payment_intent == CHARGE:
            # Charged the cap at once; the unused part went back as a refund, not a release.
            charged = Money(row.cap, row.currency)
            refunded = Money(row.refunded or Decimal(0), row.currency)
            body |= {
                "charged": charged.to_wire(),
                "refunded": refunded.to_wire(),
                "released": (charged * 0).to_wire(),
            }
            header = refund_receipt(
                row.payment_reference,
                settled_at,
                row.offer_id,
                charged.to_minor_units(),
                refunded.to_minor_units(),
            )
            return self._signer.sign(body), header
        header = payment_receipt(
            row.payment_reference, settled_at, row.offer_id, captured.rounded().to_minor_units()
        )
        return self._signer.sign(body), header


def _int(value: Decimal | None) -> int | None:
    return None if value is None else int(value)
