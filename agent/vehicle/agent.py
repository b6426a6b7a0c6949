"""`VehicleAgent`: negotiate with one or more stations, pay the best deal, charge, check.

    async with VehicleAgent("agt_…", private_key, wallet) as agent:
        outcome = await agent.charge(goal, [StationTarget("https://…", "CP-1")])
        if not outcome.ok: …  # outcome.verdict.reasons says why

The imperative shell around the pure parts: `Strategy` decides each move,
`Wallet` checks and records the spend before the credential leaves,
`payer` refuses any challenge that is not the deal, `verify_receipt` judges
the receipt. Progress is reported through `on_event` (the CLI draws it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vehicle.client import ReceiptDocument, SessionView, StationClient, StationTarget
from vehicle.errors import (
    AgentError,
    AgentSuspended,
    ChallengeMismatch,
    NegotiationClosed,
    NoAnswer,
    NoDeal,
    NotSettled,
    OfferExpired,
    PaymentRefused,
    ProtocolViolation,
    SpendLimitExceeded,
    StationError,
    Unauthenticated,
)
from vehicle.follower import SessionUpdate, follow_session
from vehicle.goal import Goal
from vehicle.logs import get_logger
from vehicle.merchant import MerchantPayment, pay_merchant
from vehicle.money import Money
from vehicle.payer import (
    INTENTS,
    ExpectedPayment,
    authorization,
    mismatches,
    parse_challenge,
)
from vehicle.receipt import AgreedSession, Verdict, verify_receipt
from vehicle.signing import AgentSigner
from vehicle.spt import TokenRequest
from vehicle.strategy import Accept, Counter, Strategy, WalkAway
from vehicle.terms import parse_time
from vehicle.wallet import Clock, Instrument, Wallet, utc_now

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """A step the agent took, for a UI: `offer`, `counter`, `walk_away`, `deal`,
    `chosen`, `challenge`, `paid`, then the session's `meter` / `status` / `poll`
    / `stop_requested` / `settled` updates, and `receipt`."""

    kind: str
    station: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Deal:
    target: StationTarget
    negotiation_id: str
    accept: Accept
    rounds: int

    @property
    def offer_id(self) -> str:
        return self.accept.offer.offer_id


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    deal: Deal
    session: SessionView
    verdict: Verdict | None
    # Why the other stations gave no deal, and the deals not taken (dearer).
    passed_over: tuple[str, ...] = ()
    alternatives: tuple[Deal, ...] = ()

    @property
    def ok(self) -> bool:
        """Settled with a receipt that adds up."""
        return (
            self.session.status == "settled" and self.verdict is not None and self.verdict.accepted
        )


def session_mismatches(session: SessionView, deal: Deal) -> tuple[str, ...]:
    """How the session the station opened differs from the deal (pure)."""
    reasons = []
    if session.cap != deal.accept.cap:
        reasons.append(f"session cap {session.cap.to_wire()}, agreed {deal.accept.cap.to_wire()}")
    if session.tariff is not None and session.tariff != deal.accept.offer.tariff:
        reasons.append("session tariff differs from the agreed offer")
    if not session.payment_reference:
        reasons.append("session without a payment reference")
    return tuple(reasons)


class VehicleAgent:
    """The agent: one identity (agent id + Ed25519 key), one wallet, any number of stations."""

    def __init__(
        self,
        agent_id: str,
        private_key: Ed25519PrivateKey,
        wallet: Wallet,
        *,
        clock: Clock = utc_now,
        timeout_s: float = 15.0,
        use_events: bool = True,
        poll_interval_s: float = 1.0,
        charge_deadline_s: float = 4 * 3600,
        on_event: Callable[[AgentEvent], None] | None = None,
        stop_on_cancel: bool = False,
        events_idle_timeout_s: float = 30.0,
        intents: tuple[str, ...] = INTENTS,
    ) -> None:
        self.agent_id = agent_id
        self.wallet = wallet
        self.clock = clock
        self.timeout_s = timeout_s
        self.use_events = use_events
        self.poll_interval_s = poll_interval_s
        self.charge_deadline_s = charge_deadline_s
        # Cancelling `charge()` while the car charges asks the station to stop (the CLI's Ctrl-C).
        self.stop_on_cancel = stop_on_cancel
        # Silence on the event stream longer than this: fall back to polling.
        self.events_idle_timeout_s = events_idle_timeout_s
        self.on_event = on_event or (lambda _event: None)
        # The MPP intents the agent pays, in order of preference: a 402 offering several is
        # paid on the first listed that it offers (`authorize`: a hold; `charge`: the cap
        # charged at once, the unused part refunded).
        unknown = set(intents) - set(INTENTS)
        if not intents or unknown:
            raise ValueError(f"intents must be among {INTENTS}, got {intents}")
        self.intents = intents
        self._paid_on: dict[str, str] = {}  # offer id -> the intent it was paid on
        self._private_key = private_key
        self._signers: dict[str, AgentSigner] = {}
        self.http = httpx.AsyncClient(
            auth=self.signer(agent_id),
            timeout=httpx.Timeout(timeout_s),
            headers={"User-Agent": "chargepay-vehicle/0.1"},
        )
        self.log = _log.bind(agent_id=agent_id)

    async def __aenter__(self) -> VehicleAgent:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def signer(self, agent_id: str) -> AgentSigner:
        """The request signer for one agent id (each operator registers the key under its own)."""
        if agent_id not in self._signers:
            self._signers[agent_id] = AgentSigner(agent_id, self._private_key)
        return self._signers[agent_id]

    def client(self, target: StationTarget) -> StationClient:
        return StationClient(
            self.http,
            target.base_url,
            auth=self.signer(target.agent_id or self.agent_id),
            timeout_s=self.timeout_s,
        )

    def _emit(self, kind: str, target: StationTarget, **data: Any) -> None:
        self.on_event(AgentEvent(kind, target.label, data))

    # -- negotiation ------------------------------------------------------------

    def spendable_goal(self, goal: Goal) -> Goal:
        """The goal with its budget cut to what the wallet may still spend today."""
        if goal.currency != self.wallet.currency:
            raise SpendLimitExceeded(f"goal in {goal.currency}, wallet in {self.wallet.currency}")
        allowance = self.wallet.allowance()
        if allowance.amount <= 0:
            limit = self.wallet.limits.per_day
            raise SpendLimitExceeded(
                f"the daily limit of {limit.to_wire()} {limit.currency} is spent "
                f"({self.wallet.spent_today().to_wire()} held or spent today, "
                f"recorded in {self.wallet.ledger}); it resets at midnight ({self.wallet.tz})"
            )
        return replace(goal, budget=goal.budget.min(allowance))

    async def negotiate(self, goal: Goal, target: StationTarget) -> Deal:
        """Bargain with one charge point; `NoDeal` when the agent walks away."""
        client = self.client(target)
        strategy = Strategy.for_goal(goal, self.clock())
        reply = await client.open_negotiation(goal, target)
        while True:
            offer = reply.offer
            if offer is not None:
                self._emit(
                    "offer", target, round=reply.round, max_rounds=reply.max_rounds,
                    status=str(reply.status), offer_id=offer.offer_id,
                    price_per_kwh=str(offer.tariff.energy_price_per_kwh),
                    estimated_cost=offer.estimated_cost.to_wire(),
                    reservation=str(strategy.reservation_price(offer.tariff)),
                )  # fmt: skip
            move = strategy.decide(reply, self.clock())
            if isinstance(move, Accept):
                deal = Deal(target, reply.negotiation_id, move, reply.round)
                self._emit(
                    "deal", target, price_per_kwh=str(move.offer.tariff.energy_price_per_kwh),
                    estimated_cost=move.estimated_cost.to_wire(), cap=move.cap.to_wire(),
                )  # fmt: skip
                return deal
            if isinstance(move, WalkAway):
                self._emit("walk_away", target, reason=move.reason)
                raise NoDeal((f"{target.label}: {move.reason}",))
            assert isinstance(move, Counter)
            terms = move.terms
            self._emit(
                "counter", target, price_per_kwh=str(terms.energy_price_per_kwh),
                max_power_kw=str(terms.max_power_kw) if terms.max_power_kw else None,
                departure_at=terms.departure_at.isoformat() if terms.departure_at else None,
            )  # fmt: skip
            try:
                reply = await client.counter(reply.negotiation_id, terms)
            except NegotiationClosed as exc:
                raise NoDeal((f"{target.label}: {exc.detail}",)) from exc

    async def negotiate_all(
        self, goal: Goal, targets: Sequence[StationTarget]
    ) -> tuple[list[Deal], list[str]]:
        """Bargain with every charge point at once; the deals, cheapest first, and why not.

        One station failing does not stop the others. When none offers a deal,
        an identity refusal (`Unauthenticated`, `AgentSuspended`) is raised as
        such, anything else as `NoDeal` with every station's reason.
        """
        refusals: list[StationError] = []

        async def one(target: StationTarget) -> Deal | str:
            try:
                return await self.negotiate(goal, target)
            except NoDeal as exc:
                return "; ".join(exc.reasons)
            except (StationError, ProtocolViolation) as exc:
                self._emit("walk_away", target, reason=str(exc))
                if isinstance(exc, Unauthenticated | AgentSuspended):
                    refusals.append(exc)
                return f"{target.label}: {exc}"

        async with asyncio.TaskGroup() as tasks:
            running = [tasks.create_task(one(target)) for target in targets]
        results = [task.result() for task in running]
        deals = [r for r in results if isinstance(r, Deal)]
        if not deals and refusals:
            raise refusals[0]
        deals.sort(key=lambda d: (d.accept.estimated_cost.amount, d.accept.cap.amount))
        return deals, [r for r in results if isinstance(r, str)]

    # -- payment ----------------------------------------------------------------

    async def pay(self, deal: Deal) -> SessionView:
        """Accept the deal and pay its 402 challenge; the authorised session.

        The cap is checked against the wallet and reserved while the credential
        is in flight; it is recorded as spent only once the station answers 201
        (the hold is placed). Any other answer — a refusal (4xx) or a failure the
        station reports (5xx) — releases it: the station placed no hold. When no
        answer comes at all (`NoAnswer`), the outcome is unknown and the
        reservation keeps counting until the challenge expires, the last moment
        the station could have placed the hold. A declined card raises
        `PaymentDeclined` (with the station's fresh challenge): never retried
        blindly.
        """
        client = self.client(deal.target)
        cap, offer_id = deal.accept.cap, deal.offer_id
        try:
            session = await client.accept(deal.negotiation_id, offer_id, cap)
        except PaymentRefused as refused:
            challenge = parse_challenge(refused.www_authenticate, self.intents)
        else:  # the station asked for no payment: nothing to hold
            self.log.warning("agent.accepted_without_payment", session_id=session.session_id)
            return session
        self._emit(
            "challenge", deal.target, amount=challenge.request.get("amount"),
            currency=challenge.request.get("currency"), expires=challenge.expires,
        )  # fmt: skip
        now = self.clock()
        expected = ExpectedPayment(cap, offer_id, self.intents)
        reasons = mismatches(challenge, expected, now)
        if reasons:
            raise ChallengeMismatch(reasons)
        expires = parse_time(challenge.expires or "", "expires")  # checked by `mismatches`
        instrument = self.wallet.instrument
        if self.wallet.issuer is not None:  # a token for this challenge alone
            details = challenge.request.get("methodDetails")
            network = details.get("networkId") if isinstance(details, dict) else None
            token = await self.wallet.issuer.issue(
                TokenRequest(
                    cap.rounded().to_minor_units(),
                    cap.currency,
                    expires,
                    network if isinstance(network, str) else None,
                )
            )
            instrument = Instrument(token)
        credential = authorization(challenge, expected, instrument, now)
        until = expires + timedelta(seconds=self.timeout_s)
        self.wallet.reserve(offer_id, cap, until)
        try:
            session = await client.accept(deal.negotiation_id, offer_id, cap, credential)
        except NoAnswer:
            self.log.warning("agent.payment_unanswered", offer_id=offer_id, counted_until=until)
            raise
        except StationError:
            self.wallet.release(offer_id)  # the station answered: no hold stands
            raise
        self.wallet.placed(offer_id)
        self._paid_on[offer_id] = challenge.intent
        self._emit(
            "paid", deal.target, session_id=session.session_id, cap=cap.to_wire(),
            reference=session.payment_reference, intent=challenge.intent,
        )  # fmt: skip
        return session

    async def pay_merchant(
        self, method: str, url: str, *, max_amount: Money | None = None, **request: Any
    ) -> MerchantPayment:
        """A request to a standard MPP merchant (not a chargepay station): a stripe/charge
        402 is paid within the wallet's limits (`vehicle.merchant`). Unsigned: a merchant
        knows nothing of the agent's key; the payment is the authentication."""
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s), headers={"User-Agent": "chargepay-vehicle/0.1"}
        ) as http:
            paid = await pay_merchant(
                http, self.wallet, method, url, clock=self.clock, timeout_s=self.timeout_s,
                max_amount=max_amount, **request,
            )  # fmt: skip
        if paid.amount is not None:
            self.log.info("agent.merchant_paid", url=url, amount=paid.amount.to_wire())
        return paid

    # -- the whole charge --------------------------------------------------------

    async def charge(self, goal: Goal, stations: Sequence[StationTarget]) -> ChargeOutcome:
        """Negotiate with every station, pay the cheapest deal, charge, check the receipt.

        Raises `NoDeal` when no station offers terms within the goal (or the
        wallet), and the station's error when paying fails.
        """
        if not stations:
            raise ValueError("no station to charge at")
        deals, passed_over = await self.negotiate_all(self.spendable_goal(goal), stations)
        session = deal = None
        for deal in deals:
            try:
                session = await self.pay(deal)
                break
            except (OfferExpired, NegotiationClosed) as exc:
                passed_over.append(f"{deal.target.label}: {exc.detail}")
        if session is None or deal is None:
            raise NoDeal(tuple(passed_over) or ("no station answered",))
        self._emit("chosen", deal.target, session_id=session.session_id)
        early = session_mismatches(session, deal)
        client = self.client(deal.target)
        try:
            final = await follow_session(
                client,
                session.session_id,
                stop_at_kwh=goal.energy_kwh,
                on_update=lambda u: self._session_update(deal.target, u),
                use_events=self.use_events,
                poll_interval_s=self.poll_interval_s,
                idle_timeout_s=self.events_idle_timeout_s,
                deadline_s=self.charge_deadline_s,
            )
        except asyncio.CancelledError:
            if self.stop_on_cancel:
                await self._stop_quietly(client, session.session_id)
            raise
        verdict = await self._conclude(deal, session, final, early)
        others = tuple(d for d in deals if d is not deal)
        return ChargeOutcome(deal, final, verdict, tuple(passed_over), others)

    async def _stop_quietly(self, client: StationClient, session_id: str) -> None:
        """Ask the station to stop a session the agent is abandoning (bounded by the timeout)."""
        try:
            await client.stop(session_id)
            self.log.info("agent.stopped_on_cancel", session_id=session_id)
        except (AgentError, asyncio.CancelledError) as exc:
            self.log.warning("agent.stop_on_cancel_failed", session_id=session_id, reason=str(exc))

    def _session_update(self, target: StationTarget, update: SessionUpdate) -> None:
        self.on_event(AgentEvent(update.kind, target.label, update.data))

    async def _conclude(
        self, deal: Deal, authorized: SessionView, final: SessionView, early: tuple[str, ...]
    ) -> Verdict | None:
        offer_id = deal.offer_id
        if final.status != "settled":
            if final.captured is not None and final.captured.amount > 0:
                self.wallet.settle(offer_id, final.captured)
            elif final.status == "cancelled" or final.payment_status in ("canceled", "cancelled"):
                self.wallet.release(offer_id)
            return None
        document = await self._receipt(deal, final.session_id)
        agreed = AgreedSession(
            session_id=final.session_id,
            tariff=deal.accept.offer.tariff,
            cap=deal.accept.cap,
            payment_reference=authorized.payment_reference or "",
            offer_id=offer_id,
            intent=self._paid_on.get(offer_id, authorized.payment_intent),
        )
        key = deal.target.receipt_key
        if key is None:
            try:  # trust on first use: the key comes from the station that signs
                key = await self.client(deal.target).receipt_key()
            except (StationError, ProtocolViolation) as exc:
                self.log.warning("agent.receipt_key_unavailable", reason=str(exc))
        verdict = verify_receipt(document.body, document.header, agreed, key)
        if early:
            verdict = replace(verdict, reasons=early + verdict.reasons)
        claimed = verdict.body.captured if verdict.body is not None else None
        self.wallet.settle(
            offer_id,
            Money(claimed, deal.accept.cap.currency)
            if claimed is not None
            else final.captured or deal.accept.cap,
        )
        self._emit(
            "receipt", deal.target, verdict=verdict.kind, reasons=list(verdict.reasons),
            notes=list(verdict.notes),
        )  # fmt: skip
        self.log.info(
            "agent.receipt", session_id=final.session_id, verdict=verdict.kind,
            reasons=list(verdict.reasons),
        )  # fmt: skip
        return verdict

    async def _receipt(self, deal: Deal, session_id: str) -> ReceiptDocument:
        client = self.client(deal.target)
        for _ in range(20):  # the receipt may trail the settled status by a moment
            try:
                return await client.receipt(session_id)
            except NotSettled:
                await asyncio.sleep(self.poll_interval_s / 4)
        return await client.receipt(session_id)


def parse_departure(text: str | None, now: datetime) -> datetime | None:
    """An ISO departure time for the CLI (`Z` or an offset required)."""
    if text is None:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.utcoffset() is None:
        raise ValueError("departure needs a time zone (e.g. 2026-11-22T18:00:00Z)")
    if value <= now:
        raise ValueError("departure is in the past")
    return value
