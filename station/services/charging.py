"""The charging service: what charge points report, made durable and billed.

`ChargingService` implements `station.ocpp.ports.ChargingEvents`. Every event
becomes one unit of work on the `GroupCommitWriter`, so it is committed
(together with other connections' units) before the adapter answers the
charge point. A transaction's change is billed inside its own unit: the
optional `TransactionListener` (billing, given by the composition root,
`station.bootstrap`) reads the session and stages its new billing state in
that unit (`bill`), so the metering, the billing and the frame log commit
together or not at all; after the commit billing's act says what to tell the
charge point, and its `Billing` becomes the `TransactionReply`.
Without a listener any id token is accepted and nothing is priced. With one,
a token no session claims is refused — unless ``free_vend`` is on (the
operator lets the charge points' own cards charge, unpriced).

A transaction whose id token no session claims (the listener's
``id_token_accepted`` says None at its start) is not billed: the listener
hears nothing more about it, which keeps unpriced charging off billing's
write path. Open transactions are cached in memory (a charge point is connected to one
node at a time and its messages are handled one after the other), so the hot
path — a meter value — costs no read, only the batched writes.

A transaction message that could not be committed because the database is
unavailable raises `TransactionNotStored`: the adapter then leaves it
unanswered and closes the connection, so the charge point sends it again
(a CALLERROR would let it discard the message). The transaction's cached
state is dropped (the outcome of a lost commit is unknown: it is read back
from the database), and an end that was not stored is remembered in
``ends_missing`` until one is.

Unknown transactions (a meter value or an end for a transaction the station
never saw start) get a normal answer — the charge point must be able to
clear its queue — while the samples are stored without a transaction and an
``unknown_transaction`` anomaly is recorded.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.engine import Connection

from station.domain import metering
from station.domain.events import (
    ChargePointBooted,
    ConnectorStatusChanged,
    MeterReading,
    MeterValuesReported,
    TransactionEnded,
    TransactionStarted,
)
from station.domain.metering import Anomaly, MeterState
from station.errors import TransactionNotStored
from station.logs import get_logger
from station.ocpp.ports import TransactionReply
from station.services.batching import Batcher
from station.services.ports import Billing, TransactionListener, TransactionView
from station.store.base import utcnow
from station.store.charging import (
    AnomalyRow,
    ChargePointRow,
    ConnectorRow,
    MeterSampleRow,
    TransactionRow,
)
from station.store.db import Database
from station.store.readings import UnitSessions
from station.store.writer import GroupCommitWriter, Staged, is_outage

_log = get_logger(__name__)
_SAMPLES: Table = MeterSampleRow.__table__  # type: ignore[assignment]
_ANOMALIES: Table = AnomalyRow.__table__  # type: ignore[assignment]
_TRANSACTIONS: Table = TransactionRow.__table__  # type: ignore[assignment]
_CHARGE_POINTS: Table = ChargePointRow.__table__  # type: ignore[assignment]
_UNBILLED = Billing()
# What billing does once a reading's unit committed (`TransactionListener.bill`).
_Act = Callable[[], Billing]
# The stop reason of a transaction the station ended itself: the charge point's end was
# not stored during an outage, and the charge point no longer has it (`end_not_received`).
END_NOT_RECEIVED = "EndNotReceived"
_Event = TypeVar("_Event", TransactionStarted, MeterValuesReported, TransactionEnded)
# A handler keeps its own signature through the decorator (the OCPP port's Protocol).
_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Any]])


def _resent_if_not_stored(handler: _Handler) -> _Handler:
    """A transaction message the database could not take raises TransactionNotStored."""

    @functools.wraps(handler)
    async def handle(service: ChargingService, event: _Event, **options: Any) -> Any:
        try:
            return await handler(service, event, **options)
        except Exception as exc:
            if not is_outage(exc):  # StoreUnavailable included
                raise
            if isinstance(event, MeterValuesReported) and event.transaction_ref is None:
                raise  # not a transaction's: an ordinary error answers it
            key = (event.charge_point_id, event.transaction_ref or "")
            service._open.pop(key, None)  # committed or not: read back next time
            if isinstance(event, TransactionEnded):
                service.ends_missing.setdefault(key, time.monotonic())
            _log.warning(
                "charging.transaction_not_stored",
                charge_point_id=event.charge_point_id,
                transaction_ref=event.transaction_ref,
                message=type(event).__name__,
                error=type(exc).__name__,
            )
            raise TransactionNotStored("the database is unavailable: send it again") from exc

    return cast(_Handler, handle)


@dataclass(slots=True)
class _Open:
    """A transaction as the service last committed it.

    Only ``meter`` changes in place, after the commit of each reading (a
    connection's messages are handled one after the other); an end replaces
    the whole record.
    """

    transaction_id: int
    charge_point_id: str
    transaction_ref: str
    evse_id: int
    id_token: str | None
    id_token_accepted: bool
    started_at: datetime
    meter_start_wh: Decimal | None
    meter: MeterState
    ended: bool = False
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    # Whether billing claimed the id token (False: the listener is not asked again).
    billed: bool = True

    def view(self) -> TransactionView:
        return TransactionView(
            transaction_id=self.transaction_id,
            charge_point_id=self.charge_point_id,
            transaction_ref=self.transaction_ref,
            evse_id=self.evse_id,
            id_token=self.id_token,
            started_at=self.started_at,
            meter_start_wh=self.meter_start_wh,
            energy_wh=self.meter.energy_wh,
            last_reading_at=self.meter.last_at,
            ended=self.ended,
            stopped_at=self.stopped_at,
            stop_reason=self.stop_reason,
            power_w=self.meter.power_w,
        )


class ChargingService:
    def __init__(
        self,
        db: Database,
        writer: GroupCommitWriter,
        *,
        node_id: str = "node-1",
        listener: TransactionListener | None = None,
        free_vend: bool = False,
    ) -> None:
        self.db = db
        self.writer = writer
        self.node_id = node_id
        self.listener = listener
        self.free_vend = free_vend
        self._open: dict[tuple[str, str], _Open] = {}
        # (charge point, transaction ref) -> when its end could not be stored (monotonic).
        self.ends_missing: dict[tuple[str, str], float] = {}
        # Connects and disconnects: one writer unit for all those asked meanwhile.
        self._presence: Batcher[str, dict[str, Any], None] = Batcher(
            self._write_presence, merge=_later_columns, name="charging-presence"
        )

    # --- charge points -----------------------------------------------------------------

    async def reset_node(self) -> None:
        """At start-up: nothing is connected to this node yet (after a crash too)."""
        async with self.db.session() as session:
            await session.execute(
                update(ChargePointRow)
                .where(ChargePointRow.node_id == self.node_id, ChargePointRow.connected.is_(True))
                .values(connected=False)
            )

    async def charge_point_connected(self, charge_point_id: str, ocpp_version: str) -> None:
        values = {
            "connected": True,
            "ocpp_version": ocpp_version,
            "node_id": self.node_id,
            "last_seen": utcnow(),
        }
        await self._presence.request(charge_point_id, values)
        if self.listener is not None:
            await self.listener.charge_point_connected(charge_point_id)

    async def charge_point_disconnected(self, charge_point_id: str) -> None:
        for key in [k for k in self._open if k[0] == charge_point_id]:
            del self._open[key]  # reloaded from the database on its next message
        await self._presence.request(charge_point_id, {"connected": False, "last_seen": utcnow()})

    async def _write_presence(self, changes: dict[str, dict[str, Any]]) -> dict[str, None]:
        """Connects and disconnects as one writer unit (one ``executemany`` per column set).

        Each charge point is in ``changes`` once (its updates merged in order), so the
        order in which the column sets are written does not matter. Every value is the
        station's own (no charge point's text): one bad row cannot fail the others.
        """

        def work(_conn: Connection, staged: Staged) -> None:
            for charge_point_id, values in changes.items():
                staged.update(_CHARGE_POINTS, "charge_point_id", charge_point_id, values)

        await self.writer.submit(work)
        return {}

    async def charge_point_moved(self, charge_point_id: str) -> None:
        """Another node holds it now (station.cluster): forget its cached transactions;
        the charge point's row is the new holder's to write."""
        for key in [k for k in self._open if k[0] == charge_point_id]:
            del self._open[key]

    def charge_point_seen(self, charge_point_id: str) -> None:
        """A heartbeat: note the time with the next batch, without waiting for it."""
        now = utcnow()

        def work(conn: Connection, staged: Staged) -> None:
            staged.update(_CHARGE_POINTS, "charge_point_id", charge_point_id, {"last_seen": now})

        self.writer.post(work)

    async def charge_point_booted(self, event: ChargePointBooted) -> None:
        values = {
            "vendor": event.vendor[:50],
            "model": event.model[:50],
            "firmware_version": (event.firmware_version or "")[:50] or None,
            "serial_number": (event.serial_number or "")[:50] or None,
            "ocpp_version": str(event.ocpp_version),
            "last_seen": utcnow(),
        }
        await self._update_charge_point(event.charge_point_id, values)

    async def _update_charge_point(self, charge_point_id: str, values: dict[str, Any]) -> None:
        """Its own unit (the values are the charge point's text: a refused one fails alone),
        staged: the batch's boots go in one ``executemany``."""

        def work(_conn: Connection, staged: Staged) -> None:
            staged.update(_CHARGE_POINTS, "charge_point_id", charge_point_id, values)

        await self.writer.submit(work)

    async def connector_status_changed(self, event: ConnectorStatusChanged) -> None:
        key = {
            "charge_point_id": event.charge_point_id,
            "evse_id": event.evse_id,
            "connector_id": event.connector_id,
        }
        values = {
            "status": event.status[:32],
            "error_code": event.error_code,
            "updated_at": event.timestamp,
        }

        def work(conn: Connection, _staged: Staged) -> None:
            result = conn.execute(
                update(ConnectorRow)
                .where(*(getattr(ConnectorRow, k) == v for k, v in key.items()))
                .values(**values)
            )
            if result.rowcount == 0:
                conn.execute(insert(ConnectorRow).values(**key, **values))

        await self.writer.submit(work)

    # --- authorisation -----------------------------------------------------------------

    async def authorize(self, charge_point_id: str, id_token: str) -> bool:
        if self.listener is None:
            return True
        verdict = await self.listener.id_token_accepted(charge_point_id, id_token)
        return self.free_vend if verdict is None else verdict

    # --- transactions ------------------------------------------------------------------

    @_resent_if_not_stored
    async def transaction_started(self, event: TransactionStarted) -> TransactionReply:
        """Open a transaction, or answer a start sent again as the first time.

        A start is sent again when its answer was slow or lost: 2.x names its
        transaction; a 1.6 start is the same when its connector, id tag, meter
        start and timestamp are. Either is looked up again inside the unit
        that would insert it, so a resend racing the first one (a charge point
        that reconnected while the first commit stalled) finds it too.
        """
        cp = event.charge_point_id
        if event.transaction_ref is not None:
            known = await self._find(cp, event.transaction_ref)
            if known is not None:  # a repeated Started (retry after a lost answer)
                return await self._started_again(known, event)
        accepted, billed = True, self.listener is not None
        if event.id_token is not None and self.listener is not None:
            verdict = await self.listener.id_token_accepted(cp, event.id_token)
            accepted = self.free_vend if verdict is None else verdict
            billed = verdict is not None
        result = metering.apply(
            metering.start(event.meter_start_wh), event.readings, seq_no=event.seq_no
        )
        meter = result.state
        row = {
            "charge_point_id": cp,
            "transaction_ref": event.transaction_ref or f"~{uuid.uuid4().hex}",
            "id_token": event.id_token,
            "id_token_accepted": accepted,
            "billed": billed,
            "evse_id": event.evse_id,
            "connector_id": event.connector_id,
            "remote_start_id": event.remote_start_id,
            "meter_start_wh": event.meter_start_wh,
            "energy_wh": meter.energy_wh,
            "last_register_wh": meter.last_wh,
            "last_reading_at": meter.last_at,
            "last_seq_no": meter.last_seq_no,
            "started_at": event.timestamp,
            "ended": False,
        }

        def work(conn: Connection, staged: Staged) -> tuple[_Open | Any, _Act | None]:
            existing = conn.execute(_same_start(event)).first()
            if existing is not None:
                return existing, None  # sent again: no write
            inserted = conn.execute(insert(_TRANSACTIONS).returning(_TRANSACTIONS.c.id), [row])
            transaction_id = int(inserted.scalar_one())
            ref = event.transaction_ref or str(transaction_id)
            if event.transaction_ref is None:
                conn.execute(
                    update(_TRANSACTIONS)
                    .where(_TRANSACTIONS.c.id == transaction_id)
                    .values(transaction_ref=ref)
                )
            _stage(staged, cp, transaction_id, event.evse_id, event.readings, event.seq_no)
            _stage_anomalies(staged, cp, transaction_id, result.anomalies)
            opened = _Open(
                transaction_id=transaction_id,
                charge_point_id=cp,
                transaction_ref=ref,
                evse_id=event.evse_id,
                id_token=event.id_token,
                id_token_accepted=accepted,
                billed=billed,
                started_at=event.timestamp,
                meter_start_wh=event.meter_start_wh,
                meter=meter,
            )
            return opened, self._bill(conn, staged, opened)

        stored, act = await self.writer.submit(work)
        if not isinstance(stored, _Open):
            known = self._opened(cp, stored)
            _log.info(
                "charging.transaction_start_resent",
                charge_point_id=cp,
                transaction_id=known.transaction_id,
                transaction_ref=known.transaction_ref,
            )
            return await self._started_again(known, event)
        opened, transaction_id, ref = stored, stored.transaction_id, stored.transaction_ref
        self._open[(cp, ref)] = opened
        _log.info(
            "charging.transaction_started",
            charge_point_id=cp,
            transaction_id=transaction_id,
            transaction_ref=ref,
            evse_id=event.evse_id,
        )
        return self._replied(opened, act)

    async def _started_again(self, known: _Open, event: TransactionStarted) -> TransactionReply:
        """A start already stored: readings it brings that are new are applied, nothing else.

        A 2.x Started sent again carries the seqNo it had: stored already, it is
        answered as before, without a second copy of its samples or a
        ``duplicate_seq_no`` anomaly (it is no charge point fault).
        """
        seen = known.meter.last_seq_no
        resent = event.seq_no is not None and seen is not None and event.seq_no <= seen
        if not resent and (event.readings or event.seq_no is not None):
            return await self._apply_readings(
                known, event.readings, event.seq_no, event.evse_id, event.timestamp
            )
        return await self._billed_alone(known)

    @_resent_if_not_stored
    async def meter_values(self, event: MeterValuesReported) -> TransactionReply | None:
        cp = event.charge_point_id
        opened = await self._find(cp, event.transaction_ref) if event.transaction_ref else None
        if opened is None:
            await self._orphan_readings(
                cp, event.evse_id, event.readings, event.seq_no, event.transaction_ref
            )
            return None
        return await self._apply_readings(
            opened, event.readings, event.seq_no, event.evse_id, event.timestamp
        )

    @_resent_if_not_stored
    async def transaction_ended(
        self, event: TransactionEnded, *, anomalies: tuple[Anomaly, ...] = ()
    ) -> TransactionReply:
        """End a transaction (``anomalies``: more to record with it, in the same unit)."""
        cp = event.charge_point_id
        opened = await self._find(cp, event.transaction_ref)
        if opened is None:
            await self._orphan_readings(cp, 0, event.readings, event.seq_no, event.transaction_ref)
            return TransactionReply(transaction_id=0, id_token_accepted=True)
        if opened.ended and opened.stop_reason != END_NOT_RECEIVED:
            # A repeated end: answer as before, change nothing. (An end the station
            # made for want of the charge point's own is replaced by it when it comes.)
            # Billing is told again, in a unit of its own: an end is stored with its
            # billing (one unit), but one stored while billing failed on a bug, or by an
            # earlier version, is billed now; hearing of an end twice changes nothing.
            self.ends_missing.pop((cp, opened.transaction_ref), None)
            return await self._billed_alone(opened)
        result = metering.apply(opened.meter, event.readings, seq_no=event.seq_no)
        found = [*anomalies, *result.anomalies]
        if result.anomalies and result.state is opened.meter and event.seq_no is not None:
            # A duplicate seqNo on the end message still ends the transaction.
            result = metering.apply(opened.meter, event.readings)
        stopped = metering.stop(result.state, event.meter_stop_wh, event.timestamp)
        found.extend(stopped.anomalies)
        meter = stopped.state
        tid = opened.transaction_id
        stop_reason = (event.reason or "")[:64] or None
        values: dict[str, Any] = {
            "meter_stop_wh": event.meter_stop_wh,
            "energy_wh": meter.energy_wh,
            "last_register_wh": meter.last_wh,
            "last_reading_at": meter.last_at,
            "last_seq_no": meter.last_seq_no,
            "stopped_at": event.timestamp,
            "stop_reason": stop_reason,
            "ended": True,
        }
        if opened.meter_start_wh is None and meter.start_wh is not None:
            values["meter_start_wh"] = meter.start_wh

        ended = replace(
            opened,
            meter=meter,
            ended=True,
            stopped_at=event.timestamp,
            stop_reason=stop_reason,
            meter_start_wh=opened.meter_start_wh or meter.start_wh,
        )

        def work(conn: Connection, staged: Staged) -> _Act | None:
            conn.execute(update(_TRANSACTIONS).where(_TRANSACTIONS.c.id == tid).values(**values))
            _stage(staged, cp, tid, opened.evse_id, event.readings, event.seq_no)
            _stage_anomalies(staged, cp, tid, found)
            return self._bill(conn, staged, ended)

        act = await self.writer.submit(work)
        self._open.pop((cp, opened.transaction_ref), None)
        self.ends_missing.pop((cp, opened.transaction_ref), None)
        _log.info(
            "charging.transaction_ended",
            charge_point_id=cp,
            transaction_id=tid,
            energy_wh=meter.energy_wh,
            reason=event.reason,
        )
        return self._replied(ended, act)

    async def end_not_received(self, charge_point_id: str, transaction_ref: str) -> bool:
        """End a transaction whose end the charge point sent but the station could not store.

        For when the charge point says it has dropped that end (`MissingEnds`):
        the transaction ends at its last stored reading, with the stop reason
        ``EndNotReceived`` and an ``end_not_received`` anomaly, so billing
        settles what was metered. Should the charge point's own end come after
        all, it replaces this one. False if the transaction is unknown or ended.
        """
        opened = await self._find(charge_point_id, transaction_ref)
        if opened is not None and opened.ended and opened.stop_reason != END_NOT_RECEIVED:
            self.ends_missing.pop((charge_point_id, transaction_ref), None)
            return False
        if opened is None or opened.ended:
            self.ends_missing.pop((charge_point_id, transaction_ref), None)
            return False
        at = opened.meter.last_at or opened.started_at
        anomaly = Anomaly(
            "end_not_received",
            "its end was not stored and the charge point no longer has it:"
            " ended at the last stored reading",
            at,
        )
        event = TransactionEnded(
            charge_point_id=charge_point_id,
            transaction_ref=transaction_ref,
            timestamp=at,
            reason=END_NOT_RECEIVED,
        )
        await self.transaction_ended(event, anomalies=(anomaly,))
        return True

    # --- helpers -----------------------------------------------------------------------

    async def _apply_readings(
        self,
        opened: _Open,
        readings: tuple[MeterReading, ...],
        seq_no: int | None,
        evse_id: int,
        at: datetime,
    ) -> TransactionReply:
        cp, tid = opened.charge_point_id, opened.transaction_id
        anomalies: tuple[Anomaly, ...]
        if opened.ended:
            meter = opened.meter
            anomalies = (Anomaly("after_end", "readings after the transaction ended", at),)
        else:
            result = metering.apply(opened.meter, readings, seq_no=seq_no)
            meter, anomalies = result.state, result.anomalies
        changed = meter != opened.meter
        after = replace(opened, meter=meter)

        def work(conn: Connection, staged: Staged) -> _Act | None:
            if changed:
                staged.update(
                    _TRANSACTIONS,
                    "id",
                    tid,
                    {
                        "energy_wh": meter.energy_wh,
                        "last_register_wh": meter.last_wh,
                        "last_reading_at": meter.last_at,
                        "last_seq_no": meter.last_seq_no,
                        "meter_start_wh": opened.meter_start_wh
                        if opened.meter_start_wh is not None
                        else meter.start_wh,
                    },
                )
            _stage(staged, cp, tid, evse_id or opened.evse_id, readings, seq_no)
            _stage_anomalies(staged, cp, tid, anomalies)
            return self._bill(conn, staged, after) if changed else None

        act = await self.writer.submit(work)
        if changed:
            opened.meter = meter
        return self._replied(opened, act)

    async def _orphan_readings(
        self,
        cp: str,
        evse_id: int,
        readings: tuple[MeterReading, ...],
        seq_no: int | None,
        ref: str | None,
    ) -> None:
        anomalies: tuple[Anomaly, ...] = ()
        if ref is not None:
            anomalies = (Anomaly("unknown_transaction", f"transaction {ref!r} is not known"),)
            _log.warning("charging.unknown_transaction", charge_point_id=cp, transaction_ref=ref)

        def work(_conn: Connection, staged: Staged) -> None:
            _stage(staged, cp, None, evse_id, readings, seq_no)
            _stage_anomalies(staged, cp, None, anomalies)

        await self.writer.submit(work)

    async def _find(self, cp: str, ref: str) -> _Open | None:
        cached = self._open.get((cp, ref))
        if cached is not None:
            return cached
        async with self.db.reader() as session:
            row = await session.scalar(
                select(TransactionRow).where(
                    TransactionRow.charge_point_id == cp, TransactionRow.transaction_ref == ref
                )
            )
            if row is not None:
                session.expunge(row)
        if row is None:
            return None
        return self._opened(cp, row)

    def _opened(self, cp: str, row: Any) -> _Open:
        """A stored transaction (an ORM row or a Core row), cached while not ended."""
        start = row.meter_start_wh
        if start is None and row.last_register_wh is not None:
            start = row.last_register_wh - row.energy_wh
        opened = _Open(
            transaction_id=row.id,
            charge_point_id=cp,
            transaction_ref=row.transaction_ref,
            evse_id=row.evse_id,
            id_token=row.id_token,
            id_token_accepted=row.id_token_accepted,
            billed=row.billed,
            started_at=row.started_at,
            meter_start_wh=row.meter_start_wh,
            meter=MeterState(
                start_wh=start,
                last_wh=row.last_register_wh,
                last_at=row.last_reading_at,
                last_seq_no=row.last_seq_no,
            ),
            ended=row.ended,
            stopped_at=row.stopped_at,
            stop_reason=row.stop_reason,
        )
        if not row.ended:
            self._open[(cp, row.transaction_ref)] = opened
        return opened

    def _bill(self, conn: Connection, staged: Staged, opened: _Open) -> _Act | None:
        """Inside the unit that stores the transaction's change: billing reads and stages
        in the same unit, so the reading and its billing commit together or not at all."""
        if self.listener is None or not opened.billed:
            return None
        try:
            return self.listener.bill(UnitSessions(conn, staged), opened.view())
        except Exception as exc:
            if is_outage(exc):  # nothing of the unit commits: the message is sent again
                raise
            # Billing must never lose a reading: the reading commits unbilled.
            _log.exception(
                "charging.listener_failed",
                charge_point_id=opened.charge_point_id,
                transaction_id=opened.transaction_id,
            )
            return None

    async def _billed_alone(self, opened: _Open) -> TransactionReply:
        """Billing told again of a transaction already stored (a start sent again), in a
        unit of its own."""
        if self.listener is None or not opened.billed:
            return self._replied(opened, None)

        def work(conn: Connection, staged: Staged) -> _Act | None:
            return self._bill(conn, staged, opened)

        return self._replied(opened, await self.writer.submit(work))

    def _replied(self, opened: _Open, act: _Act | None) -> TransactionReply:
        """The reply, once the unit committed: billing's act (events, commands) first."""
        billing = _UNBILLED
        if act is not None:
            try:
                billing = act()
            except Exception:
                _log.exception(
                    "charging.listener_failed",
                    charge_point_id=opened.charge_point_id,
                    transaction_id=opened.transaction_id,
                )
        return TransactionReply(
            transaction_id=opened.transaction_id,
            id_token_accepted=opened.id_token_accepted and billing.id_token_accepted,
            total_cost=billing.total_cost,
            max_cost=billing.max_cost,
        )


def _later_columns(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """Two updates of one row as one: the later one's columns over the earlier one's."""
    return {**earlier, **later}


def _same_start(event: TransactionStarted) -> Any:
    """The stored transaction this start opened already, if it was sent before."""
    t = _TRANSACTIONS.c
    query = select(_TRANSACTIONS).where(t.charge_point_id == event.charge_point_id)
    if event.transaction_ref is not None:  # 2.x: the charge point names it
        return query.where(t.transaction_ref == event.transaction_ref)
    return query.where(  # 1.6: the same connector, tag, meter start and time
        t.connector_id == event.connector_id,
        t.started_at == event.timestamp,
        t.id_token.is_(None) if event.id_token is None else t.id_token == event.id_token,
        t.meter_start_wh.is_(None)
        if event.meter_start_wh is None
        else t.meter_start_wh == event.meter_start_wh,
    ).limit(1)


def _stage(
    staged: Staged,
    cp: str,
    transaction_id: int | None,
    evse_id: int,
    readings: tuple[MeterReading, ...],
    seq_no: int | None,
) -> None:
    for reading in readings:
        for value in reading.values:
            staged.add(
                _SAMPLES,
                {
                    "charge_point_id": cp,
                    "transaction_id": transaction_id,
                    "evse_id": evse_id,
                    "timestamp": reading.timestamp,
                    "measurand": value.measurand[:64],
                    "phase": value.phase,
                    "context": str(value.context),
                    "unit": value.unit[:16],
                    "value": value.value,
                    "raw": value.raw[:100] if value.raw is not None else None,
                    "seq_no": seq_no,
                },
            )


def _stage_anomalies(staged: Staged, cp: str, transaction_id: int | None, anomalies: Any) -> None:
    now = utcnow()
    for anomaly in anomalies:
        _log.warning(
            "charging.anomaly",
            charge_point_id=cp,
            transaction_id=transaction_id,
            kind=anomaly.kind,
            detail=anomaly.detail,
        )
        staged.add(
            _ANOMALIES,
            {
                "charge_point_id": cp,
                "transaction_id": transaction_id,
                "kind": anomaly.kind,
                "detail": anomaly.detail,
                "timestamp": anomaly.timestamp,
                "recorded_at": now,
            },
        )
