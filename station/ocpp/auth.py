"""Who may open an OCPP connection: charge point credentials and the failed-login throttle.

`Authenticator.authenticate()` decides one handshake:

* a client certificate whose common name is the id (security profile 3)
  gets in, always, without touching the throttle or the database;
* so does the right password (profiles 1/2), always: it is checked against
  the charge point's scrypt hash, or against this process's cache of
  credentials it verified before (an HMAC of the password under a random
  per-process key, tied to the stored hash, so a new password invalidates it);
* everything else is a failure, answered 401 after a delay that grows with
  the failures of that (address, id) pair. An unknown id, an id that cannot
  be one (``/ocpp/CP%00X``, never looked up) and a wrong password cost the
  same work (scrypt against a dummy hash) and get the same answer, so ids
  cannot be told apart by status or by time;
* past a ceiling of failures per address per minute (high enough for a large
  site behind one NAT), credentials that would need a scrypt check get 429;
  certificates and cached credentials still get in.

Failure state is bounded: fixed-window counters in LRU tables of
``ocpp_auth_max_entries`` keys each (the oldest key is forgotten first).
scrypt checks run in a pool of ``ocpp_auth_threads`` threads in arrival order
(an admission queue), so a reconnect storm neither blocks the event loop nor
starves the other threads; a handshake whose deadline passes while queued
leaves the queue without costing a check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from websockets.datastructures import Headers

from station.logs import get_logger
from station.settings import Settings
from station.store import charging as store
from station.store.db import Database

_log = get_logger(__name__)
# Failures of one (address, id) pair are counted over this window.
PAIR_WINDOW_S = 600.0
# The per-address ceiling counts failures over this window.
ADDRESS_WINDOW_S = 60.0
# Ids longer than this are invalid anyway; keys keep no more of them.
_KEY_ID_CHARS = 49
_LOOKUPS = 3


class Outcome(enum.Enum):
    ADMITTED = "admitted"
    UNAUTHORIZED = "unauthorized"  # 401 (unknown id, wrong or missing password)
    THROTTLED = "throttled"  # 429: the address is past its ceiling
    UNAVAILABLE = "unavailable"  # 503: the charge point registry could not be read


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    # THROTTLED, UNAVAILABLE: seconds to wait before trying again (Retry-After).
    retry_after_s: float = 0.0


def address_key(address: str) -> str:
    """The address a limit applies to: IPv4 as is, IPv6 by its /64 (one site)."""
    if ":" not in address:
        return address[:64]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Counters:
    """Fixed-window counts per key in an LRU table of at most ``max_entries`` keys."""

    def __init__(self, window_s: float, max_entries: int, clock: Callable[[], float]) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self.clock = clock
        self._table: OrderedDict[object, list[float]] = OrderedDict()  # key -> [start, count]

    def __len__(self) -> int:
        return len(self._table)

    def count(self, key: object) -> tuple[int, float]:
        """(failures in the key's current window, seconds until that window ends)."""
        entry = self._table.get(key)
        if entry is None:
            return 0, 0.0
        left = entry[0] + self.window_s - self.clock()
        return (int(entry[1]), left) if left > 0 else (0, 0.0)

    def add(self, key: object) -> int:
        now = self.clock()
        entry = self._table.get(key)
        if entry is None or entry[0] + self.window_s <= now:
            entry = [now, 0]
            self._table[key] = entry
        entry[1] += 1
        self._table.move_to_end(key)
        while len(self._table) > self.max_entries:
            self._table.popitem(last=False)
        return int(entry[1])


class FailureThrottle:
    """Counts failed logins per (address, id) and per address, in bounded memory.

    The first ``free`` failures of a pair are answered at once; each further
    one waits twice as long as the one before, from ``base_delay_s`` up to
    ``max_delay_s``. An address past ``address_ceiling`` failures in its minute
    is `over_ceiling`. Nothing here refuses the right credentials: the caller
    checks them first.
    """

    def __init__(
        self,
        *,
        free: int,
        base_delay_s: float,
        max_delay_s: float,
        address_ceiling: int,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.address_ceiling = address_ceiling
        self.pairs = _Counters(PAIR_WINDOW_S, max_entries, clock)
        self.addresses = _Counters(ADDRESS_WINDOW_S, max_entries, clock)

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> FailureThrottle:
        return cls(
            free=settings.ocpp_auth_free_failures,
            base_delay_s=settings.ocpp_auth_failure_delay_s,
            max_delay_s=settings.ocpp_auth_failure_max_delay_s,
            address_ceiling=settings.ocpp_auth_failures_per_address_per_minute,
            max_entries=settings.ocpp_auth_max_entries,
            clock=clock,
        )

    def over_ceiling(self, address: str) -> float | None:
        """Seconds until the address may try again, or None when it is under its ceiling."""
        failures, left = self.addresses.count(address_key(address))
        return left if failures >= self.address_ceiling else None

    def fail(self, address: str, charge_point_id: str) -> float:
        """Count one failure; return how long to wait before answering it."""
        address = address_key(address)
        self.addresses.add(address)
        failures = self.pairs.add((address, charge_point_id[:_KEY_ID_CHARS]))
        if failures <= self.free:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** (failures - self.free - 1))


def basic_credentials(headers: Headers) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None."""
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class Authenticator:
    """Decides each OCPP handshake (see the module docstring). One per listener."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.throttle = FailureThrottle.from_settings(settings, clock)
        self._key = secrets.token_bytes(32)
        # id -> (stored hash, keyed digest of the password that matched it); only
        # registered ids with their right password get here, so the registry bounds it.
        self._verified: dict[str, tuple[str, bytes]] = {}
        # Unknown ids are checked against this, at the cost of a real hash.
        self._dummy_hash = store.hash_password(secrets.token_urlsafe(24))
        self._threads = settings.ocpp_auth_threads or os.cpu_count() or 1
        # Registry look-ups at once: a reconnect storm queues here, in arrival order,
        # not in the database pool that the writer and the API need too.
        self._lookups = asyncio.Semaphore(_LOOKUPS)
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Drop the queued checks and let the threads finish. Idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def authenticate(
        self, charge_point_id: str, address: str, headers: Headers, *, certificate_matches: bool
    ) -> Verdict:
        """Admit, refuse (after the failure's delay) or throttle one handshake.

        Safe to cancel (the handshake's deadline): a queued check is dropped.
        """
        if certificate_matches:
            return Verdict(Outcome.ADMITTED)
        credentials = basic_credentials(headers)
        password = credentials[1] if credentials and credentials[0] == charge_point_id else None
        stored = None
        if password is not None and store.is_valid_charge_point_id(charge_point_id):
            try:
                async with self._lookups:
                    stored = await store.password_hash_of(self.db, charge_point_id)
            except Exception:
                _log.exception("ocpp.auth_lookup_failed", charge_point_id=charge_point_id)
                return Verdict(Outcome.UNAVAILABLE, 5.0)
            if stored is not None and self._cached(charge_point_id, stored, password):
                return Verdict(Outcome.ADMITTED)
        retry_after = self.throttle.over_ceiling(address)
        if retry_after is not None:
            return Verdict(Outcome.THROTTLED, retry_after)
        if password is not None and await self._verify(password, stored):
            assert stored is not None
            self._remember(charge_point_id, stored, password)
            return Verdict(Outcome.ADMITTED)
        delay = self.throttle.fail(address, charge_point_id)
        if delay > 0:
            await asyncio.sleep(delay)
        return Verdict(Outcome.UNAUTHORIZED)

    async def _verify(self, password: str, stored: str | None) -> bool:
        """scrypt in the pool, against the dummy hash when the id is unknown: same work."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="ocpp-auth")
        loop = asyncio.get_running_loop()
        matches = await loop.run_in_executor(
            self._pool, store.verify_password, password, stored or self._dummy_hash
        )
        return matches and stored is not None

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    def _cached(self, charge_point_id: str, stored: str, password: str) -> bool:
        cached = self._verified.get(charge_point_id)
        if cached is None or cached[0] != stored:
            return False
        # A mismatch falls through to the full check: a wrong guess costs the same
        # whether or not the id has connected before.
        return hmac.compare_digest(cached[1], self._digest(password))

    def _remember(self, charge_point_id: str, stored: str, password: str) -> None:
        self._verified[charge_point_id] = (stored, self._digest(password))
