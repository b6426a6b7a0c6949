"""Ends of transaction the station could not store, asked for again once it can.

During a database outage the charging service leaves an end of transaction
unanswered and the connection is closed, so that the charge point sends it
again (`station.errors.TransactionNotStored`); it remembers the end in
``ChargingService.ends_missing``. Most charge points resend it on
reconnecting. For the others, `MissingEnds` looks again once the charge
point has been back ``after_s`` seconds with the end still missing:

* 2.0.1 / 2.1: GetTransactionStatus. Messages still queued: wait for them.
  Still ongoing: nothing is missing after all. Neither: the charge point has
  dropped the end.
* 1.6 has no such message: RemoteStopTransaction. Accepted: the charge point
  still had the transaction running and now ends it (its StopTransaction
  follows). Rejected: it no longer has it.

A dropped end is made by the station (`ChargingService.end_not_received`):
the transaction ends at its last stored reading with an ``end_not_received``
anomaly, so billing settles what was metered instead of leaving the session
charging and its hold open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from station.errors import ChargepayError
from station.logs import get_logger
from station.services.charging import ChargingService
from station.services.ports import ChargePointCommands

_log = get_logger(__name__)


class MissingEnds:
    def __init__(
        self,
        charging: ChargingService,
        commands: ChargePointCommands,
        *,
        after_s: float = 60.0,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.charging = charging
        self.commands = commands
        self.after_s = after_s
        self.interval_s = interval_s
        self.clock = clock
        # When each charge point with a missing end was first seen connected since.
        self._back_since: dict[tuple[str, str], float] = {}

    async def run(self, until: asyncio.Event | None = None) -> None:
        """Sweep every ``interval_s`` until ``until`` is set (or cancelled). Safe to cancel."""
        until = until or asyncio.Event()
        while not until.is_set():
            await self.sweep()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await until.wait()

    async def sweep(self) -> None:
        """One pass over the missing ends; each failure is logged and tried on the next."""
        commands = self.commands
        now = self.clock()
        for key in list(self.charging.ends_missing):
            cp, ref = key
            if not commands.is_connected(cp):
                self._back_since.pop(key, None)  # it sends its queue when it is back
                continue
            back = self._back_since.setdefault(key, now)
            if now - back < self.after_s:
                continue
            try:
                await self._ask(commands, cp, ref)
            except (ChargepayError, SQLAlchemyError, OSError) as exc:
                _log.warning(
                    "charging.missing_end_unresolved",
                    charge_point_id=cp,
                    transaction_ref=ref,
                    error=type(exc).__name__,
                )

    async def _ask(self, commands: ChargePointCommands, cp: str, ref: str) -> None:
        key = (cp, ref)
        log = _log.bind(charge_point_id=cp, transaction_ref=ref)
        status = await commands.transaction_status(cp, ref)
        if status is None:  # 1.6
            if await commands.stop_transaction(cp, ref):
                log.info("charging.missing_end_stopped")
                self._back_since[key] = self.clock()  # its StopTransaction follows
                return
            dropped = True
        elif status.messages_in_queue:
            log.info("charging.missing_end_queued")
            self._back_since[key] = self.clock()
            return
        else:
            dropped = not status.ongoing
        if not dropped:
            log.info("charging.missing_end_ongoing")
            self._forget(key)
            return
        log.warning("charging.missing_end_dropped")
        await self.charging.end_not_received(cp, ref)
        self._forget(key)

    def _forget(self, key: tuple[str, str]) -> None:
        self.charging.ends_missing.pop(key, None)
        self._back_since.pop(key, None)
