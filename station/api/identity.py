"""Who is calling: the agent behind a signed request (PROTOCOL §1).

`authenticated_agent` is the FastAPI dependency every agent route takes. It
verifies the RFC 9421 signature (``ed25519``, ``keyid`` = agent id, covering
``"@method" "@target-uri"`` and ``"content-digest"`` when there is a body),
the RFC 9530 digest of the body, ``created`` within
``settings.signature_max_skew_s`` of our clock and a nonce never seen before
(stored with an expiry; a unique insert, so every station node sharing the
database agrees). Anything wrong → 401 ``unauthenticated``; a suspended agent
→ 403 ``agent_suspended``. ``@target-uri`` is the URL the agent used: built
from ``settings.public_url`` when set, else from the request's Host header and
raw path. The ``Authorization`` header is not looked at (MPP uses it).

`SignedRequestBudget` (a middleware) comes first: at most
``settings.max_requests_in_flight_per_agent`` signed requests per (``keyid``,
client address) are being worked on at once, counted before any signature
check or database work and until the answer starts; the rest get 429
``rate_limited`` with ``Retry-After`` at once. A burst from one agent then
cannot take the database pool from everyone else (a charge point's login,
other agents). The keyid is not trusted yet: someone forging it spends only
that keyid's budget at their own address. Over every keyid, at most
``settings.max_requests_in_flight_per_address`` signed requests per client
address are in flight, so made-up keyids (each a look-up and a 401) are
bounded too; unsigned requests to the agent paths (unregistered payers,
``settings.open_payers``) count against that budget alone.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends, Request
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from station.api.problems import problem
from station.api.rate_limits import InFlight
from station.api.services import services_of
from station.domain.limits import SpendingLimits
from station.domain.money import Money
from station.errors import AgentSuspended, NotFound, Unauthenticated
from station.logs import get_logger
from station.ocpp.auth import address_key
from station.services import open_payers
from station.services.limits import limits_of, remaining
from station.services.repositories.agents import Agent as AgentRecord
from station.services.unit_of_work import AlreadyExists

if TYPE_CHECKING:
    from station.metrics import StationMetrics

_log = get_logger(__name__)
MAX_NONCE_CHARS = 128
# Expired nonces one request removes at most (the rest go with the next requests).
NONCE_CLEANUP_BATCH = 256
REQUIRED_COMPONENTS = ("@method", "@target-uri")


@dataclass(frozen=True, slots=True)
class AgentPrincipal:
    """The authenticated agent a request acts for."""

    agent_id: str
    name: str
    currency: str
    limits: SpendingLimits
    status: str
    allowed_charge_points: tuple[str, ...] | None = None
    # What the per-agent ceilings (event streams, probes, opens) count by: the agent, or
    # for unregistered payers, who all act as one agent, the agent at one client site.
    ceilings_key: str = ""

    @property
    def unregistered(self) -> bool:
        return self.ceilings_key not in ("", self.agent_id)

    def may_use(self, charge_point_id: str) -> bool:
        return self.allowed_charge_points is None or charge_point_id in self.allowed_charge_points

    def check_charge_point(self, charge_point_id: str) -> None:
        """NotFound unless the operator lets this agent use the charge point."""
        if not self.may_use(charge_point_id):
            raise NotFound(f"no charge point {charge_point_id}")

    @classmethod
    def of(cls, agent: AgentRecord, *, site: str | None = None) -> AgentPrincipal:
        """The agent of a record; ``site`` (a client address) for an unregistered payer."""
        allowed = agent.allowed_charge_points
        return cls(
            agent_id=agent.agent_id,
            name=agent.name,
            currency=agent.currency,
            limits=limits_of(agent),
            status=agent.status,
            allowed_charge_points=tuple(allowed) if allowed is not None else None,
            ceilings_key=agent.agent_id if site is None else f"{agent.agent_id}@{site}",
        )


@dataclass
class _Message:
    method: str
    url: str
    headers: Any


def target_uri(request: Request, public_url: str | None) -> str:
    """The absolute URL the agent addressed, with the path exactly as sent."""
    scope = request.scope
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    suffix = f"{path}?{query}" if query else path
    if public_url:
        return public_url.rstrip("/") + suffix
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    return f"{scope.get('scheme', 'http')}://{host}{suffix}"


def _key_id(signature_input: str) -> str:
    """The one signature's ``keyid`` (not yet trusted: verification follows)."""
    try:
        members = http_sf.parse(signature_input.encode("latin-1"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise Unauthenticated("malformed Signature-Input") from exc
    if not isinstance(members, dict) or len(members) != 1:
        raise Unauthenticated("exactly one signature expected")
    member: Any = next(iter(members.values()))
    params = member[1] if isinstance(member, tuple) and len(member) == 2 else None
    key_id = params.get("keyid") if isinstance(params, dict) else None
    if not isinstance(key_id, str) or not 0 < len(key_id) <= 64:
        raise Unauthenticated("signature without a usable keyid")
    return key_id


def _verifier(agent_id: str, public_key: str, max_skew_s: int) -> HTTPMessageVerifier:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={agent_id: key}, private_keys={}),
    )
    verifier.max_clock_skew = timedelta(seconds=max_skew_s)
    return verifier


def _refuse(request: Request, reason: str, detail: str) -> Unauthenticated:
    services = services_of(request)
    metrics = services.metrics
    if metrics is not None:
        metrics.auth_failures.labels(reason=reason).inc()
    _log.info("agent.auth_refused", reason=reason, path=request.url.path)
    return Unauthenticated(detail)


async def authenticated_agent(request: Request) -> AgentPrincipal:
    """FastAPI dependency: verify the request's signature and return its agent."""
    services = services_of(request)
    settings = services.settings
    headers = request.headers
    if "signature-input" not in headers or "signature" not in headers:
        if settings.open_payers:  # an unregistered MPP payer: its payment authenticates it
            site = address_key(request.client.host) if request.client else "unknown"
            shared = await open_payers.open_agent(services_of(request).units, settings)
            payer = AgentPrincipal.of(shared, site=site)
            if payer.status != "active":
                raise AgentSuspended("unregistered payers are suspended")
            return payer
        raise _refuse(request, "unsigned", "request is not signed (RFC 9421)")
    key_id = _key_id(headers["signature-input"])
    async with services_of(request).units.reader() as uow:
        record = await uow.agents.get(key_id)
    agent = AgentPrincipal.of(record) if record is not None else None
    public_key = record.public_key if record is not None else ""
    if agent is None:
        raise _refuse(request, "unknown_key", "unknown keyid")
    body = await request.body()
    message = _Message(request.method, target_uri(request, settings.public_url), headers)
    try:
        (result,) = _verifier(agent.agent_id, public_key, settings.signature_max_skew_s).verify(
            message,
            # Older than the skew is stale; so is newer than the skew (checked by the verifier).
            max_age=timedelta(0),
            require_components=REQUIRED_COMPONENTS,
            body=body,
        )
    except (HTTPMessageSignaturesException, ValueError) as exc:
        raise _refuse(request, "bad_signature", f"signature not accepted: {exc}") from exc
    nonce = result.parameters.get("nonce")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_CHARS:
        raise _refuse(request, "no_nonce", f"signature needs a nonce of 1–{MAX_NONCE_CHARS} chars")
    created = datetime.fromtimestamp(int(result.parameters["created"]), UTC)
    await _remember_nonce(request, agent.agent_id, nonce, created, settings.signature_max_skew_s)
    if agent.status != "active":
        raise AgentSuspended(f"agent {agent.agent_id} is suspended")
    return agent


async def _remember_nonce(
    request: Request, agent_id: str, nonce: str, created: datetime, max_skew_s: int
) -> None:
    """Store the nonce until no signature carrying it could be accepted; 401 if seen.

    Also forgets up to a batch of the agent's expired nonces (the rest go with
    the next requests), skipping rows another request is deleting.
    """
    now = datetime.now(UTC)
    expires_at = max(created, now) + timedelta(seconds=max_skew_s + 1)
    try:
        async with services_of(request).units() as uow:
            await uow.nonces.purge_expired(now, agent_id=agent_id, limit=NONCE_CLEANUP_BATCH)
            await uow.nonces.add(agent_id, nonce, expires_at=expires_at)
    except AlreadyExists as exc:
        raise _refuse(request, "replayed", "nonce already used") from exc


# Seconds a client refused for too many requests in flight is told to wait.
IN_FLIGHT_RETRY_AFTER_S = 1


class SignedRequestBudget:
    """ASGI middleware: a budget of signed requests in flight per (keyid, client address).

    Unsigned requests and ones whose ``Signature-Input`` names no usable
    keyid pass untouched (the dependency refuses them without database work).
    A request stops counting when its answer starts, so an open event stream
    holds no budget (it has its own ceiling).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        budget: InFlight,
        site_budget: InFlight,
        metrics: StationMetrics | None = None,
    ) -> None:
        self.app = app
        self.budget = budget
        self.site_budget = site_budget
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = _budget_key(scope)
        if key is None and not scope.get("path", "").startswith(_AGENT_PATHS):
            await self.app(scope, receive, send)
            return
        # An unsigned agent request (an unregistered payer's) counts for its site only.
        site = ("*", key[1] if key is not None else _site(scope))
        if not self.site_budget.acquire(site):
            await self._refuse(scope, receive, send, f"{self.site_budget.per_key} requests")
            return
        if key is not None and not self.budget.acquire(key):
            self.site_budget.release(site)
            agent = f"{self.budget.per_key} requests of this agent"
            await self._refuse(scope, receive, send, agent)
            return
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                if key is not None:
                    self.budget.release(key)
                self.site_budget.release(site)

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, answering)
        finally:
            release()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        if self.metrics is not None:
            self.metrics.http_rate_limited.labels(limit="in_flight").inc()
        response = problem(
            429,
            "rate_limited",
            "Too many requests",
            f"{what} already in flight from this address",
            headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_S)},
            retry_after_s=IN_FLIGHT_RETRY_AFTER_S,
        )
        await response(scope, receive, send)


# Where unsigned requests are agents' too (unregistered payers), and do database work.
_AGENT_PATHS = ("/v1/negotiations", "/v1/sessions", "/v1/agents")


def _site(scope: Scope) -> str:
    client = scope.get("client")
    # IPv6 by its /64, as the OCPP login limits count it: one site, not one address.
    return address_key(client[0]) if client else "unknown"


def _budget_key(scope: Scope) -> tuple[str, str] | None:
    """(keyid, client site) of a signed request, from the headers alone; else None."""
    for name, value in scope.get("headers", ()):
        if name == b"signature-input":
            try:
                key_id = _key_id(value.decode("latin-1"))
            except Unauthenticated:
                return None
            return key_id, _site(scope)
    return None


Agent = Annotated[AgentPrincipal, Depends(authenticated_agent)]

router = APIRouter(tags=["agents"])


@router.get("/v1/agents/me")
async def who_am_i(agent: Agent, request: Request) -> dict[str, Any]:
    """The signed-in agent, its limits and what its window still allows."""
    async with services_of(request).units.reader() as uow:
        record = await uow.agents.get(agent.agent_id)
        if record is None:
            raise NotFound(f"no agent {agent.agent_id}")
        left = await remaining(uow, record)
    limits = agent.limits
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "status": agent.status,
        "currency": agent.currency,
        "limit_per_session": Money(limits.limit_per_session, agent.currency).to_wire(),
        "limit_per_window": Money(limits.limit_per_window, agent.currency).to_wire(),
        "window_hours": limits.window_hours,
        "remaining": Money(left, agent.currency).to_wire(),
        "allowed_charge_points": (
            list(agent.allowed_charge_points) if agent.allowed_charge_points is not None else None
        ),
    }
