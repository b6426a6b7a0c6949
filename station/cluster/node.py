"""One node of several on one PostgreSQL: leases, routed commands and the listener.

Everything between nodes goes through PostgreSQL — rows are the truth, and
``LISTEN/NOTIFY`` (asyncpg's ``add_listener``, on one connection of the
node's own) only wakes the side that should look:

* **Leases** (``charge_point_leases``). An authenticated connection takes its
  charge point's row (`acquire`: insert or take over, the epoch raised by
  one) and notifies ``chargepay_leases``; the node that held it before hears
  it and closes its connection. The holder renews all its rows in one
  statement every third of ``cluster_lease_s``; a held charge point missing
  from the renewed rows was taken over (the connection is closed), and a node
  that cannot renew for a whole lease closes its connections (it can no
  longer tell whether it holds them). A dead node's rows expire: other nodes
  count a lease live only while its node keeps renewing (they hear each
  renewal), so a command for a charge point of a dead node fails at once
  after the lease time.
* **Commands** (``cluster_commands``). `call` writes a row for the holder and
  notifies ``chargepay_cmd.<holder>`` in the same statement; the holder
  claims it (``pending`` → ``running``, so it runs once, and never after its
  deadline), runs it on its connection and writes the answer with a notify
  on ``chargepay_ans.<caller>`` carrying it. A node sweeps its pending rows
  on every renewal tick (a wake-up lost while its listener reconnected).
* **Events** are `station.cluster.events.ClusterEvents`' (stored rows, a
  notify on ``chargepay_events`` per row); the listener hands them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.engine import make_url

from station.errors import ChargePointNotConnected, ChargePointTimeout, StationUnavailable
from station.logs import get_logger
from station.settings import Settings

if TYPE_CHECKING:
    from station.ocpp.connections import Connections

_log = get_logger(__name__)
LEASES = "chargepay_leases"
EVENTS = "chargepay_events"
# How long answered and abandoned command rows are kept (for the operator to look at).
COMMANDS_KEPT_S = 600
_PAYLOAD_MAX = 7900  # NOTIFY payloads stop at 8000 bytes


def command_channel(node_id: str) -> str:
    return f"chargepay_cmd.{node_id}"


def answer_channel(node_id: str) -> str:
    return f"chargepay_ans.{node_id}"


def asyncpg_dsn(database_url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg takes, from the station's URL."""
    url = make_url(database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class Lease:
    node_id: str
    epoch: int
    ocpp_version: str | None


Executor = Callable[[str, str, dict[str, Any]], Awaitable[Any]]

_ACQUIRE = f"""
WITH l AS (
    INSERT INTO charge_point_leases
        (charge_point_id, node_id, epoch, ocpp_version, acquired_at, expires_at)
    VALUES ($1, $2, 1, $3, now(), now() + make_interval(secs => $4))
    ON CONFLICT (charge_point_id) DO UPDATE SET
        node_id = EXCLUDED.node_id,
        epoch = charge_point_leases.epoch + 1,
        ocpp_version = EXCLUDED.ocpp_version,
        acquired_at = EXCLUDED.acquired_at,
        expires_at = EXCLUDED.expires_at
    RETURNING epoch
)
SELECT epoch, pg_notify('{LEASES}', concat_ws(E'\\t', 'L', $1::text, $2::text, epoch, $3::text))
FROM l
"""
_RELEASE = f"""
WITH d AS (
    DELETE FROM charge_point_leases
    WHERE charge_point_id = $1 AND node_id = $2 AND epoch = $3
    RETURNING epoch
)
SELECT pg_notify('{LEASES}', concat_ws(E'\\t', 'R', $1::text, epoch)) FROM d
"""
_RENEW = """
UPDATE charge_point_leases SET expires_at = now() + make_interval(secs => $2)
WHERE node_id = $1
RETURNING charge_point_id, epoch
"""
_FORGET = f"""
WITH d AS (DELETE FROM charge_point_leases WHERE {{}} RETURNING charge_point_id, epoch)
SELECT pg_notify('{LEASES}', concat_ws(E'\\t', 'R', charge_point_id, epoch)) FROM d
"""
# Leases of a previous life of this node; leases their node stopped renewing.
_FORGET_MINE = _FORGET.format("node_id = $1")
_FORGET_EXPIRED = _FORGET.format("expires_at < now()")
_DISCONNECTED = """
UPDATE charge_points SET connected = false
WHERE connected AND node_id IS DISTINCT FROM $1
    AND NOT EXISTS (
        SELECT 1 FROM charge_point_leases l
        WHERE l.charge_point_id = charge_points.charge_point_id AND l.expires_at >= now()
    )
"""
# Session events are kept this long after their session ended (Last-Event-ID replays).
EVENTS_KEPT_S = 86_400
_PRUNE_EVENTS = """
DELETE FROM session_event_log e USING sessions s
WHERE e.session_id = s.session_id
    AND s.status IN ('settled', 'cancelled', 'failed')
    AND s.updated_at < now() - make_interval(secs => $1)
"""
_SEND = """
WITH c AS (
    INSERT INTO cluster_commands
        (target_node, origin_node, charge_point_id, command, args, state, created_at, deadline)
    VALUES ($1, $2, $3, $4, $5, 'pending', now(), now() + make_interval(secs => $6))
    RETURNING id
)
SELECT id, pg_notify('chargepay_cmd.' || $1::text, id::text) FROM c
"""
_CLAIM = """
UPDATE cluster_commands SET state = 'running'
WHERE id = $1 AND target_node = $2 AND state = 'pending'
RETURNING charge_point_id, command, args, deadline > now() AS live,
    extract(epoch FROM deadline - now()) AS left_s
"""
_ANSWER = """
WITH u AS (
    UPDATE cluster_commands SET state = 'done', answer = $2, answered_at = now()
    WHERE id = $1 AND state <> 'done'
    RETURNING origin_node
)
SELECT pg_notify('chargepay_ans.' || origin_node, $1::text || E'\\t' || $2) FROM u
WHERE origin_node IS NOT NULL
"""


class ClusterNode:
    """This node's part of the station: its leases, its routed commands, its listener."""

    def __init__(
        self,
        settings: Settings,
        connections: Connections,
        *,
        executor: Executor | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        from station.cluster.events import ClusterEvents

        self.node_id = settings.node_id
        self.lease_s = settings.cluster_lease_s
        self._dsn = asyncpg_dsn(settings.database_url)
        self._connections = connections
        self.pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        # Every node's leases as last heard; a remote one is live while its node renews.
        self._leases: dict[str, Lease] = {}
        self._renewed: dict[str, float] = {}  # node -> monotonic time its leases run out
        # Charge points this node holds: epoch and when it was taken (monotonic).
        self._held: dict[str, tuple[int, float]] = {}
        self._renewed_ok = time.monotonic()
        # never pruned: the first pass prunes (monotonic time counts from boot, not from 0)
        self._pruned_at: float | None = None
        self._waiting: dict[int, asyncio.Future[str]] = {}
        self._early: dict[int, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.executor = executor  # runs a routed command here (`commands.execute`)
        # The session events of every node (stored rows); the services publish on them.
        self.events = ClusterEvents(self, on_status=on_status)

    # --- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, forget this node's leases of a previous life, listen, load the leases."""
        # Leases, command rows and events are the nodes' conversation, not money: a commit
        # need not wait for the disk (a server crash loses at most the last moments of it,
        # which the nodes rebuild: connections re-take leases, callers time out).
        self.pool = await asyncpg.create_pool(
            self._dsn, min_size=2, max_size=8, server_settings={"synchronous_commit": "off"}
        )
        # Other nodes hear that these are gone (they would count them live again once
        # this node, under the same id, renews).
        await self.pool.execute(_FORGET_MINE, self.node_id)
        await self._listen()
        _log.info("cluster.started", node_id=self.node_id, lease_s=self.lease_s)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
            self._listener = None
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)
            self.pool = None

    async def run(self, until: asyncio.Event) -> None:
        """Renew the leases, sweep pending commands, keep the listener up; until ``until``."""
        tick = self.lease_s / 3
        while not until.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), tick)
            if until.is_set():
                break
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                await self.renew()
                await self._sweep()
                await self._expire()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _log.warning("cluster.tick_failed", error=type(exc).__name__)
                self._check_renewal_deadline()
        if self.events is not None:
            await self.events.flush()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
        listener = await asyncpg.connect(self._dsn)
        await listener.add_listener(LEASES, self._on_lease)
        await listener.add_listener(command_channel(self.node_id), self._on_command)
        await listener.add_listener(answer_channel(self.node_id), self._on_answer)
        await listener.add_listener(EVENTS, self._on_event)
        self._listener = listener
        # Anything missed while not listening: the leases as they are, pending commands.
        await self._load_leases()
        await self._sweep()
        if self.events is not None:
            self.events.resync()

    async def _load_leases(self) -> None:
        assert self.pool is not None
        rows = await self.pool.fetch(
            "SELECT charge_point_id, node_id, epoch, ocpp_version,"
            " extract(epoch FROM expires_at - now()) AS left_s FROM charge_point_leases"
        )
        now = time.monotonic()
        self._leases = {r[0]: Lease(r[1], int(r[2]), r[3]) for r in rows}
        for r in rows:
            if r[1] != self.node_id:
                until = now + float(r[4])
                self._renewed[r[1]] = max(self._renewed.get(r[1], 0.0), until)

    # --- leases ------------------------------------------------------------------------

    def holder(self, charge_point_id: str) -> Lease | None:
        """The live lease of a charge point held by another node, or None."""
        lease = self._leases.get(charge_point_id)
        if lease is None or lease.node_id == self.node_id:
            return None
        if self._renewed.get(lease.node_id, 0.0) < time.monotonic():
            return None  # its node stopped renewing: dead, or cut off
        return lease

    async def acquire(self, charge_point_id: str, ocpp_version: str) -> int:
        """Take the charge point's lease (over whoever held it); its new epoch."""
        assert self.pool is not None
        row = await self.pool.fetchrow(
            _ACQUIRE, charge_point_id, self.node_id, ocpp_version, float(self.lease_s)
        )
        assert row is not None
        epoch = int(row[0])
        self._held[charge_point_id] = (epoch, time.monotonic())
        self._leases[charge_point_id] = Lease(self.node_id, epoch, ocpp_version)
        return epoch

    async def release(self, charge_point_id: str, epoch: int) -> bool:
        """Give the lease back if this connection still holds it; True if it did."""
        held = self._held.get(charge_point_id)
        if held is not None and held[0] == epoch:
            del self._held[charge_point_id]
        if self.pool is None:
            return held is not None and held[0] == epoch
        row = await self.pool.fetchrow(_RELEASE, charge_point_id, self.node_id, epoch)
        if row is not None:
            lease = self._leases.get(charge_point_id)
            if lease is not None and lease.epoch == epoch:
                del self._leases[charge_point_id]
        return row is not None

    async def renew(self) -> None:
        """Extend every lease of this node; close the connections whose lease was taken."""
        assert self.pool is not None
        started = time.monotonic()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_RENEW, self.node_id, float(self.lease_s))
            await conn.execute("SELECT pg_notify($1, $2)", LEASES, f"N\t{self.node_id}")
        self._renewed_ok = started
        renewed = {r[0]: int(r[1]) for r in rows}
        for cp, (epoch, taken_at) in list(self._held.items()):
            if taken_at < started and renewed.get(cp) != epoch:
                self._lost(cp, epoch, "its lease was taken by another node")

    async def _expire(self) -> None:
        """Leases a node stopped renewing (it died): gone, and its charge points recorded
        as connected nowhere (until they reconnect, to any node). Hourly, old events go."""
        assert self.pool is not None
        await self.pool.execute(_FORGET_EXPIRED)
        await self.pool.execute(_DISCONNECTED, self.node_id)
        if self._pruned_at is None or time.monotonic() - self._pruned_at > 3600:
            self._pruned_at = time.monotonic()
            await self.pool.execute(_PRUNE_EVENTS, float(EVENTS_KEPT_S))

    def _check_renewal_deadline(self) -> None:
        if time.monotonic() - self._renewed_ok < self.lease_s:
            return
        for cp, (epoch, _) in list(self._held.items()):
            self._lost(cp, epoch, "its lease could not be renewed")

    def _lost(self, charge_point_id: str, epoch: int, why: str) -> None:
        held = self._held.get(charge_point_id)
        if held is None or held[0] > epoch:
            return
        del self._held[charge_point_id]
        _log.warning("cluster.lease_lost", charge_point_id=charge_point_id, reason=why)
        self._connections.drop(charge_point_id, epoch, why)

    def _on_lease(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        parts = payload.split("\t")
        kind = parts[0]
        now = time.monotonic()
        if kind == "N" and len(parts) == 2:
            if parts[1] != self.node_id:
                self._renewed[parts[1]] = now + self.lease_s
        elif kind == "L" and len(parts) >= 4:
            cp, node, epoch = parts[1], parts[2], int(parts[3])
            version = parts[4] if len(parts) > 4 and parts[4] else None
            known = self._leases.get(cp)
            if known is None or known.epoch <= epoch:
                self._leases[cp] = Lease(node, epoch, version)
            if node != self.node_id:
                self._renewed[node] = now + self.lease_s
                held = self._held.get(cp)
                if held is not None and held[0] < epoch:
                    self._lost(cp, held[0], f"a newer connection is on node {node}")
        elif kind == "R" and len(parts) == 3:
            cp, epoch = parts[1], int(parts[2])
            known = self._leases.get(cp)
            if known is not None and known.epoch == epoch:
                del self._leases[cp]

    # --- commands: the caller's side ----------------------------------------------------

    async def call(
        self, charge_point_id: str, command: str, args: dict[str, Any], timeout_s: float
    ) -> Any:
        """Run a command on the node holding the charge point; its answer, or raise.

        ChargePointNotConnected when no node holds it (at once, or when the holder
        lost it meanwhile); ChargePointTimeout when no answer came within
        ``timeout_s`` (the row is then closed, so the command never runs late).
        """
        lease = self.holder(charge_point_id)
        if lease is None or self.pool is None:
            raise ChargePointNotConnected(f"{charge_point_id} is not connected")
        body = json.dumps(args, separators=(",", ":"))
        row = await self.pool.fetchrow(
            _SEND, lease.node_id, self.node_id, charge_point_id, command, body, timeout_s
        )
        assert row is not None
        command_id = int(row[0])
        answer = self._early.pop(command_id, None)
        if answer is None:
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._waiting[command_id] = future
            try:
                answer = await asyncio.wait_for(future, timeout_s)
            except TimeoutError:
                answer = await self._abandon(command_id)
            finally:
                self._waiting.pop(command_id, None)
        return _decode(charge_point_id, answer)

    def post(self, charge_point_id: str, command: str, args: dict[str, Any]) -> None:
        """Queue a command for the holder, answered to nobody; never raises."""
        lease = self.holder(charge_point_id)
        if lease is None or self.pool is None:
            _log.warning("cluster.post_not_sent", charge_point_id=charge_point_id, command=command)
            return
        body = json.dumps(args, separators=(",", ":"))
        self._spawn(self._post(lease.node_id, charge_point_id, command, body))

    async def _post(self, node: str, charge_point_id: str, command: str, body: str) -> None:
        assert self.pool is not None
        try:
            await self.pool.fetchrow(_SEND, node, None, charge_point_id, command, body, 60.0)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            _log.warning("cluster.post_failed", charge_point_id=charge_point_id, error=str(exc))

    async def _abandon(self, command_id: int) -> str:
        """No answer in time: take the answer if it came after all, else close the row."""
        assert self.pool is not None
        timeout = json.dumps({"error": "timeout"})
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT state, answer FROM cluster_commands WHERE id = $1 FOR UPDATE", command_id
            )
            if row is not None and row[0] == "done" and row[1] is not None:
                return str(row[1])
            await conn.execute(
                "UPDATE cluster_commands SET state = 'done', answer = $2, answered_at = now()"
                " WHERE id = $1",
                command_id,
                timeout,
            )
        return timeout

    def _on_answer(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        head, _, answer = payload.partition("\t")
        with contextlib.suppress(ValueError):
            command_id = int(head)
            future = self._waiting.get(command_id)
            if future is None:
                if len(self._early) < 10_000:
                    self._early[command_id] = answer  # the insert's reply not yet read
            elif not future.done():
                future.set_result(answer)

    # --- commands: the holder's side ----------------------------------------------------

    def _on_command(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._spawn(self._run_command(int(payload)))

    async def _sweep(self) -> None:
        assert self.pool is not None
        rows = await self.pool.fetch(
            "SELECT id FROM cluster_commands WHERE target_node = $1 AND state = 'pending'",
            self.node_id,
        )
        for row in rows:
            self._spawn(self._run_command(int(row[0])))
        await self.pool.execute(
            "DELETE FROM cluster_commands WHERE created_at < now() - make_interval(secs => $1)",
            float(COMMANDS_KEPT_S),
        )

    async def _run_command(self, command_id: int) -> None:
        assert self.pool is not None
        row = await self.pool.fetchrow(_CLAIM, command_id, self.node_id)
        if row is None:
            return  # claimed already (a sweep and a wake-up), or not ours
        cp, command, args = row[0], row[1], json.loads(row[2])
        if not row[3]:
            answer: dict[str, Any] = {"error": "timeout"}
        elif self.executor is None:
            answer = {"error": "unavailable", "detail": "this node runs no commands"}
        else:
            try:
                async with asyncio.timeout(max(0.1, float(row[4]))):
                    answer = {"ok": await self.executor(cp, command, args)}
            except ChargePointNotConnected as exc:
                answer = {"error": "not_connected", "detail": exc.detail}
            except (ChargePointTimeout, TimeoutError):
                answer = {"error": "timeout"}
            except StationUnavailable as exc:
                answer = {"error": "unavailable", "detail": exc.detail}
            except Exception as exc:
                _log.exception("cluster.command_failed", charge_point_id=cp, command=command)
                answer = {"error": "unavailable", "detail": type(exc).__name__}
        text = json.dumps(answer, separators=(",", ":"), default=str)
        if len(text) > _PAYLOAD_MAX:
            text = json.dumps({"error": "unavailable", "detail": "answer too large"})
        await self.pool.execute(_ANSWER, command_id, text)

    # --- events --------------------------------------------------------------------------

    def _on_event(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if self.events is not None:
            self.events.heard(payload)

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning("cluster.task_failed", error=repr(task.exception()))


def _decode(charge_point_id: str, answer: str) -> Any:
    doc = json.loads(answer)
    if "ok" in doc:
        return doc["ok"]
    error, detail = doc.get("error"), doc.get("detail") or ""
    if error == "not_connected":
        raise ChargePointNotConnected(f"{charge_point_id} is not connected")
    if error == "timeout":
        raise ChargePointTimeout(f"{charge_point_id} did not answer in time")
    raise StationUnavailable(detail or f"{charge_point_id}: the command failed on its node")
