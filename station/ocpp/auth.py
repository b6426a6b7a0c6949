"""Who may open an OCPP connection: charge point credentials and the failed-login throttle.

`Authenticator.authenticate()` decides one handshake:

* a client certificate whose common name is the id (security profile 3)
  gets in, always, without touching the throttle or the database;
* so does the right password (profiles 1/2), always. It is checked, fastest
  first, against this process's cache of credentials it verified before (an
  HMAC under a random per-process key), then against the row's keyed
  verifier (`KeyedVerifier`: an HMAC-SHA256 under a key derived from
  ``CHARGEPAY_SECRET_KEY``, which never reaches the database), then against
  the row's scrypt hash. Both HMACs are tied to the stored scrypt hash, so a
  new password invalidates them. The keyed verifier is what lets a restarted
  station admit a fleet in microseconds per charge point; it is written
  beside the scrypt hash on the first successful scrypt check of a password
  random enough (`random_enough`), and only when a secret key is set
  (docs/trust.md, "Charge point passwords");
* everything else is a failure, answered 401 after a delay that grows with
  the failures of that (address, id) pair. An unknown id, an id that cannot
  be one (``/ocpp/CP%00X``, never looked up) and a wrong password cost the
  same work (scrypt against a dummy hash, or the row's own hash even when its
  keyed verifier already said no) and get the same answer, so ids cannot be
  told apart by status or by time;
* past a ceiling of failures per address per minute (high enough for a large
  site behind one NAT), credentials that would need a scrypt check get 429;
  certificates, cached credentials and keyed verifiers still get in.

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
import itertools
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from websockets.datastructures import Headers

from station.logs import get_logger
from station.metrics import StationMetrics
from station.settings import Settings
from station.startup import estimated_entropy_bits
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
# Registry rows read in one query, at most.
_LOOKUP_BATCH = 500
# Keyed verifiers written at once (one transaction), after their scrypt checks.
_MIGRATION_BATCH = 500


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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str, forwarded_for: str, trusted: Sequence[Network]) -> str:
    """The client a limit counts: the peer, or behind trusted load balancers (``trusted``)
    the rightmost ``X-Forwarded-For`` hop that is not one of them.

    The rightmost hops are the ones the balancers appended themselves; anything
    left of them came from the client and is not believed. A hop that is not
    an address leaves the peer.
    """
    if not trusted or not forwarded_for or not _within(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if not _within(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


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


# --- the keyed verifier --------------------------------------------------------------

# What a password must look like for a fast keyed verifier (see `random_enough`).
RANDOM_ENOUGH_BITS = 72.0
_LETTER_RUN = re.compile(r"[a-z]{6,}|[A-Z]{6,}")
_VERIFIER_SCHEME = "hmac-sha256"
_KEY_LABEL = b"chargepay/ocpp-password-verifier/v1"


def random_enough(password: str) -> bool:
    """Whether a password looks machine-generated: random enough for a fast verifier.

    A heuristic that errs on the side of scrypt: at least 72 bits by the
    start-up secrets' estimate (`estimated_entropy_bits`), and as much in the
    steps between characters (no sequences), three kinds of character (lower,
    upper, digit, other), no run of six letters of one case (words) and no
    four characters repeated. 24 random base64url characters
    (``secrets.token_urlsafe(18)``) pass about nine times in ten; a password
    that does not pass keeps scrypt only, which is still correct, only slower.
    """
    steps = "".join(chr((ord(b) - ord(a)) % 0x110000) for a, b in itertools.pairwise(password))
    kinds = (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    return (
        estimated_entropy_bits(password) >= RANDOM_ENOUGH_BITS
        and estimated_entropy_bits(steps) >= RANDOM_ENOUGH_BITS - 12
        and sum(any(kind(c) for c in password) for kind in kinds) >= 3
        and _LETTER_RUN.search(password) is None
        and not any(password.count(password[i : i + 4]) > 1 for i in range(len(password) - 3))
    )


class KeyedVerifier:
    """``hmac-sha256$<key id>$<digest>``: HMAC-SHA256 of (scrypt hash, id, password).

    The key is derived from the station's secret key (environment), never
    stored; the key id (a digest of the key) names which key made a verifier,
    so after a key rotation the old verifiers are skipped (scrypt decides, and
    writes a new one), never trusted nor taken for a wrong password. A
    database leak without the key gives nothing to brute-force offline; with
    the key, a fast hash of a random-enough password (72+ bits) still is not.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(secret_key.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self.key_id = hmac.new(self._key, b"key id", hashlib.sha256).hexdigest()[:16]
        self._prefix = f"{_VERIFIER_SCHEME}${self.key_id}$"

    def _digest(self, stored_hash: str, charge_point_id: str, password: str) -> bytes:
        message = "\0".join((stored_hash, charge_point_id, password)).encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def make(self, stored_hash: str, charge_point_id: str, password: str) -> str:
        digest = self._digest(stored_hash, charge_point_id, password)
        return self._prefix + base64.b64encode(digest).decode()

    def current(self, verifier: str | None) -> bool:
        """Whether this key made the verifier (else it is to be skipped and replaced)."""
        return verifier is not None and verifier.startswith(self._prefix)

    def matches(self, verifier: str, stored_hash: str, charge_point_id: str, password: str) -> bool:
        """Constant-time check; only meaningful when `current(verifier)`."""
        try:
            expected = base64.b64decode(verifier[len(self._prefix) :], validate=True)
        except (binascii.Error, ValueError):
            return False
        actual = self._digest(stored_hash, charge_point_id, password)
        return hmac.compare_digest(actual, expected)


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
        *,
        metrics: StationMetrics | None = None,
    ) -> None:
        self.db = db
        self.throttle = FailureThrottle.from_settings(settings, clock)
        # The station's own (its /metrics); None in bare use.
        self.metrics = metrics
        secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
        self.keyed = KeyedVerifier(secret) if secret else None
        self._key = secrets.token_bytes(32)
        # id -> (stored hash, keyed digest of the password that matched it); only
        # registered ids with their right password get here, so the registry bounds it.
        self._verified: dict[str, tuple[str, bytes]] = {}
        # Unknown ids are checked against this, at the cost of a real hash.
        self._dummy_hash = store.hash_password(secrets.token_urlsafe(24))
        self._threads = settings.ocpp_auth_threads or os.cpu_count() or 1
        # Database work at once: a reconnect storm queues here, in arrival order,
        # not in the database pool that the writer and the API need too.
        self._lookups = asyncio.Semaphore(_LOOKUPS)
        # Registry look-ups waiting for the next batch: id -> the handshakes asking.
        self._wanted: dict[str, list[asyncio.Future[store.Credentials | None]]] = {}
        self._looking: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        # Keyed verifiers to write: id -> (the scrypt hash it is tied to, verifier).
        self._unwritten: dict[str, tuple[str, str]] = {}
        self._writing: asyncio.Task[None] | None = None

    def close(self) -> None:
        """Drop the queued checks and let the threads finish. Idempotent.

        Verifiers not yet written are dropped: the next scrypt check writes them.
        """
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._writing is not None:
            self._writing.cancel()
            self._writing = None
        if self._looking is not None:
            self._looking.cancel()
            self._looking = None

    async def authenticate(
        self, charge_point_id: str, address: str, headers: Headers, *, certificate_matches: bool
    ) -> Verdict:
        """Admit, refuse (after the failure's delay) or throttle one handshake.

        Safe to cancel (the handshake's deadline): a queued check is dropped.
        """
        if certificate_matches:
            return self._admitted("certificate")
        credentials = basic_credentials(headers)
        password = credentials[1] if credentials and credentials[0] == charge_point_id else None
        stored: store.Credentials | None = None
        if password is not None and store.is_valid_charge_point_id(charge_point_id):
            try:
                stored = await self._credentials(charge_point_id)
            except Exception:
                _log.exception("ocpp.auth_lookup_failed", charge_point_id=charge_point_id)
                return self._refused(Outcome.UNAVAILABLE, 5.0)
            if stored is not None:
                if self._cached(charge_point_id, stored.password_hash, password):
                    return self._admitted("cache")
                if self._keyed_match(charge_point_id, stored, password):
                    self._remember(charge_point_id, stored.password_hash, password)
                    return self._admitted("keyed")
                # A keyed mismatch falls through to scrypt: a wrong guess costs the
                # same whether the id is unknown, known, or known with a verifier.
        retry_after = self.throttle.over_ceiling(address)
        if retry_after is not None:
            return self._refused(Outcome.THROTTLED, retry_after)
        hash_ = stored.password_hash if stored is not None else None
        if password is not None and await self._verify(password, hash_):
            assert stored is not None
            self._remember(charge_point_id, stored.password_hash, password)
            self._migrate(charge_point_id, stored, password)
            return self._admitted("scrypt")
        delay = self.throttle.fail(address, charge_point_id)
        if delay > 0:
            await asyncio.sleep(delay)
        return self._refused(Outcome.UNAUTHORIZED)

    async def _credentials(self, charge_point_id: str) -> store.Credentials | None:
        """The row's credentials, looked up with the others asked for meanwhile (one query).

        In a reconnect storm thousands of handshakes want their rows at once: one
        ``IN (…)`` query per batch instead of one query each. Safe to cancel.
        """
        future: asyncio.Future[store.Credentials | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._wanted.setdefault(charge_point_id, []).append(future)
        if self._looking is None or self._looking.done():
            self._looking = asyncio.create_task(self._look_up(), name="ocpp-auth-lookups")
        return await future

    async def _look_up(self) -> None:
        while self._wanted:  # what is asked during one query goes in the next
            ids = list(itertools.islice(self._wanted, _LOOKUP_BATCH))
            waiting = {cp_id: self._wanted.pop(cp_id) for cp_id in ids}
            try:
                async with self._lookups:
                    found = await store.credentials_of_many(self.db, ids)
            except Exception as exc:
                for futures in waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for cp_id, futures in waiting.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(cp_id))

    def _admitted(self, check: str) -> Verdict:
        if self.metrics is not None:
            self.metrics.ocpp_logins.labels(check=check).inc()
        return Verdict(Outcome.ADMITTED)

    def _refused(self, outcome: Outcome, retry_after_s: float = 0.0) -> Verdict:
        if self.metrics is not None:
            self.metrics.ocpp_login_refusals.labels(reason=outcome.value).inc()
        return Verdict(outcome, retry_after_s)

    async def _verify(self, password: str, stored: str | None) -> bool:
        """scrypt in the pool, against the dummy hash when the id is unknown: same work."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="ocpp-auth")
        loop = asyncio.get_running_loop()
        matches = await loop.run_in_executor(
            self._pool, store.verify_password, password, stored or self._dummy_hash
        )
        return matches and stored is not None

    def _keyed_match(self, charge_point_id: str, stored: store.Credentials, password: str) -> bool:
        keyed, verifier = self.keyed, stored.password_verifier
        if keyed is None or verifier is None or not keyed.current(verifier):
            return False
        return keyed.matches(verifier, stored.password_hash, charge_point_id, password)

    def _migrate(self, charge_point_id: str, stored: store.Credentials, password: str) -> None:
        """After a successful scrypt check: write a keyed verifier, if it may have one."""
        keyed = self.keyed
        if keyed is None or keyed.current(stored.password_verifier):
            return
        if not random_enough(password):
            return
        verifier = keyed.make(stored.password_hash, charge_point_id, password)
        self._unwritten[charge_point_id] = (stored.password_hash, verifier)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_verifiers(), name="ocpp-verifiers")

    async def _write_verifiers(self) -> None:
        """Write the pending verifiers in batches; a failure is logged and retried later."""
        while self._unwritten:  # what gathers during one write goes in the next
            batch = dict(list(self._unwritten.items())[:_MIGRATION_BATCH])
            for charge_point_id in batch:
                del self._unwritten[charge_point_id]
            try:
                async with self._lookups:
                    await store.set_password_verifiers(self.db, batch)
            except Exception:
                # Not written: the next successful scrypt check of each tries again.
                _log.exception("ocpp.verifiers_not_written", count=len(batch))

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
