"""Authorisation over MPP (PROTOCOL §3): the 402 challenge, the hold, the session.

    accept(no credential)   → PaymentRequired with a fresh challenge per offered intent
                              (settings.mpp_intents: authorize, charge), each recorded
    accept(credential)      → verify the echo (HMAC, route, expiry)
                              unit 1: consume the challenge (one use), lock the
                                      negotiation and check it has no live
                                      session, reserve the agent's limits,
                                      create the session (authorized, payment
                                      pending)
                              Stripe: a PaymentIntent for the cap — manual capture on
                                      `authorize`, captured at once on `charge` — its
                                      parameters built from the stored row alone
                                      (hold_request); an unknown outcome (timeout,
                                      outage) is looked up (find_hold): a placed hold
                                      is adopted, else the session stays authorised
                                      with payment unknown for the reconciler (503)
                              unit 2: hold placed (requires_capture) — unless the
                                      session was stopped meanwhile (a
                                      suspension, a stop): then the hold is
                                      released and nothing starts (403/409)
                              start the charge point with the session's id token

Timing, for benchmarks: `timings` keeps the latest accepts as
`AcceptTiming(authorised_s, started_s)` — credential in → hold placed and
session authorised, and → the charge point accepted the start (None when
there was no charge point to start); `last_accept_s` is the latest
authorised_s. The ``session.authorized`` log line carries both too.
"""

from __future__ import annotations

import hmac
import secrets
import string
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NoReturn

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain import decide as rules
from station.domain.events import OcppVersion
from station.domain.money import Money, MoneyError
from station.domain.negotiation import NegotiationStatus
from station.domain.payment import HoldDecision, resolve_hold
from station.domain.session import MppIntent, Payment, PaymentStatus, Session, SessionStatus
from station.domain.session_actions import Cancel, RefundCharge, ReleaseStopped
from station.domain.session_events import HoldFailed, HoldPlaced, HoldUnknown
from station.domain.tariff import Tariff
from station.errors import (
    AgentSuspended,
    CapTooLow,
    ChargepayError,
    ChargePointNotConnected,
    ChargePointTimeout,
    Conflict,
    InvalidCredential,
    NegotiationClosed,
    NotFound,
    OfferExpired,
    PaymentDeclined,
    PaymentRequired,
    PaymentUnavailable,
    StationUnavailable,
    ValidationError,
)
from station.logs import get_logger
from station.payments.authorize import Authorizer, VerifiedCredential
from station.payments.receipts import RECEIPT_CACHE_CONTROL, charge_receipt
from station.services import limits, open_payers, session_effects
from station.services.gateway import PaymentGateway, PaymentIntentState
from station.services.kill_switch import STOP_REASON as AGENT_SUSPENDED
from station.services.offers import new_id, offer_signature
from station.services.ports import ChargePointCommands
from station.services.session_events import SessionEvents
from station.services.sessions import session_view
from station.services.settlement import HOLD_LOOKBACK, SettlementService, hold_kwargs
from station.services.unit_of_work import AlreadyExists
from station.settings import Settings
from station.store import audit
from station.store.db import Database
from station.store.payments import (
    ChallengeRow,
    NegotiationRow,
    OfferRow,
    consume_challenge,
)
from station.store.repositories.sessions import SqlSessions
from station.store.trust import AgentRow
from station.store.unit_of_work import SqlUnitOfWork

_log = get_logger(__name__)
_TOKEN_ALPHABET = string.ascii_uppercase + string.digits
ID_TOKEN_LENGTH = 20  # OCPP 1.6 idTag: CiString20
MAX_CAP = Decimal(1_000_000)  # far above any charge; keeps amounts inside the columns


async def _check_not_accepted(
    session: AsyncSession, negotiation_id: str, *, lock: bool = False
) -> None:
    """One live session per negotiation: a second accept is a closed negotiation.

    With `lock`, the negotiation's row is locked first (``SELECT … FOR UPDATE``;
    SQLite's writing units hold the write lock already) and held until the unit
    ends, so two credentials for one negotiation at once queue here and the
    second sees the first's session (READ COMMITTED re-reads after the wait).
    A partial unique index on sessions(negotiation_id) backs this up.
    """
    if lock:
        await session.scalar(
            select(NegotiationRow.negotiation_id)
            .where(NegotiationRow.negotiation_id == negotiation_id)
            .with_for_update()
        )
    live = await SqlSessions(session).live_session_of_negotiation(negotiation_id)
    if live is not None:
        raise NegotiationClosed(f"negotiation already accepted (session {live})")


@dataclass(frozen=True, slots=True)
class AcceptTiming:
    authorised_s: float
    started_s: float | None


class _Probe(Exception):
    """Rolls a probing unit of work back."""


def new_id_token() -> str:
    """Opaque, unguessable (~103 bits), fits OCPP 1.6's 20-character idTag."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(ID_TOKEN_LENGTH))


class AuthorisationService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        secret: str,
        authorizer: Authorizer,
        gateway: PaymentGateway,
        settlement: SettlementService,
        commands: ChargePointCommands,
        clock: Callable[[], datetime],
        events: SessionEvents | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._events = events or SessionEvents()
        self._secret = secret
        self.authorizer = authorizer
        self._gateway = gateway
        self._settlement = settlement
        self._commands = commands
        self._now = clock
        self.last_accept_s: float | None = None
        self.timings: deque[AcceptTiming] = deque(maxlen=100_000)

    async def accept(
        self,
        agent_id: str,
        negotiation_id: str,
        offer_id: str,
        cap_text: str,
        authorization: str | None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The session and the response's headers (a charge's Payment-Receipt), or raises
        PaymentRequired (402) with the challenges."""
        now = self._now()
        has_credential = authorization is not None and "payment " in authorization.lower()
        async with self._db.reader() as session:
            neg = await session.get(NegotiationRow, negotiation_id)
            if neg is None or neg.agent_id != agent_id:
                raise NotFound(f"no negotiation {negotiation_id}")
            offer = await session.get(OfferRow, offer_id)
            if offer is None or offer.negotiation_id != negotiation_id:
                raise NotFound(f"no offer {offer_id} in this negotiation")
            if not has_credential:
                await _check_not_accepted(session, negotiation_id)
            session.expunge_all()  # keep the rows loaded past the reader's rollback
        if neg.status == NegotiationStatus.REJECTED:
            raise NegotiationClosed("negotiation was rejected")
        if offer.offer_id != neg.current_offer_id:
            raise OfferExpired("offer was superseded by a later one")
        if not hmac.compare_digest(offer.signature, offer_signature(self._secret, offer)):
            raise OfferExpired("offer signature does not verify")
        if offer.valid_until <= now:
            raise OfferExpired("offer is past valid_until")
        try:
            cap = Money.parse(cap_text, neg.currency)
        except MoneyError as exc:
            raise ValidationError(f"cap: {exc}") from exc
        if cap.amount > MAX_CAP:
            raise ValidationError(f"cap must be at most {MAX_CAP}")
        tariff = Tariff.from_wire(offer.tariff)
        if cap.amount <= 0 or cap < tariff.minimum:
            raise CapTooLow(
                f"cap must be at least {tariff.minimum.to_wire()} {neg.currency}",
                minimum=tariff.minimum.to_wire(),
            )
        request = self.authorizer.request(
            amount_minor=cap.to_minor_units(), currency=neg.currency, offer_id=offer_id
        )
        if authorization is None or not has_credential:
            await self._check_limits(agent_id, cap)
            raise await self._challenge(agent_id, neg, offer_id, request, now)
        try:
            return await self._authorise(agent_id, neg, offer, cap, request, authorization, now)
        except InvalidCredential as exc:
            _log.info("payment.credential_refused", agent_id=agent_id, detail=exc.detail)
            raise await self._challenge(agent_id, neg, offer_id, request, now, exc) from exc

    async def _check_limits(self, agent_id: str, cap: Money) -> None:
        """Refuse early (403) what reserve() would refuse; rolled back, reserves nothing."""
        try:
            async with self._db.session() as session:
                await limits.reserve(
                    SqlUnitOfWork.bound(session),
                    agent_id=agent_id,
                    session_id=f"probe_{secrets.token_hex(8)}",
                    amount=cap.amount,
                    currency=cap.currency,
                )
                raise _Probe
        except _Probe:
            pass

    async def _challenge(
        self,
        agent_id: str,
        neg: NegotiationRow,
        offer_id: str,
        request: dict[str, Any],
        now: datetime,
        error: PaymentRequired | None = None,
    ) -> PaymentRequired:
        """Fresh, recorded challenges (one per offered intent), as the 402 to raise."""
        challenges = [
            self.authorizer.challenge(request, now, intent) for intent in self.authorizer.intents
        ]
        async with self._db.session() as session:
            for challenge in challenges:
                assert challenge.expires is not None
                session.add(
                    ChallengeRow(
                        challenge_id=challenge.id,
                        negotiation_id=neg.negotiation_id,
                        offer_id=offer_id,
                        agent_id=agent_id,
                        amount_minor=int(request["amount"]),
                        currency=request["currency"],
                        expires_at=datetime.fromisoformat(challenge.expires.replace("Z", "+00:00")),
                        created_at=now,
                    )
                )
                await audit.record(
                    session,
                    actor=f"agent:{agent_id}",
                    action="payment.challenge_issued",
                    subject=neg.negotiation_id,
                    data={
                        "challenge_id": challenge.id,
                        "intent": challenge.intent,
                        "offer_id": offer_id,
                        "amount_minor": request["amount"],
                    },
                )
        exc = error or PaymentRequired("payment required: authorise a hold for the cap")
        exc.headers = {  # type: ignore[attr-defined]
            # One field, the challenges comma-separated (RFC 9110 §11.6.1).
            "WWW-Authenticate": ", ".join(map(self.authorizer.www_authenticate, challenges)),
            "Cache-Control": "no-store",
        }
        return exc

    async def _authorise(
        self,
        agent_id: str,
        neg: NegotiationRow,
        offer: OfferRow,
        cap: Money,
        request: dict[str, Any],
        authorization: str,
        now: datetime,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        started = time.perf_counter()
        verified = self.authorizer.verify(authorization, request, now)
        commands = self._commands
        if not commands.is_connected(neg.charge_point_id):
            raise ChargePointNotConnected(f"charge point {neg.charge_point_id} is not connected")
        session_id = new_id("ses")
        log = _log.bind(session_id=session_id, agent_id=agent_id)
        payer_method = None
        if agent_id == open_payers.OPEN_AGENT_ID:  # known only by its payment method
            try:
                payer_method = await self._gateway.payer_method(verified.source)
            except PaymentDeclined as exc:
                raise await self._challenge(
                    agent_id, neg, offer.offer_id, request, now, exc
                ) from exc
        opened = await self._open_session(
            agent_id, neg, offer, cap, verified, session_id, now, payer_method
        )
        try:
            hold = await self._gateway.authorize(**hold_kwargs(rules.hold_request(opened)))
        except PaymentDeclined as exc:
            await self._fail(session_id, exc)
            log.info("payment.hold_refused", code=exc.code, detail=exc.detail)
            raise await self._challenge(agent_id, neg, offer.offer_id, request, now, exc) from exc
        except PaymentUnavailable as exc:
            # The outcome is unknown: Stripe may have placed the hold. Look once; a hold
            # found is adopted (the session proceeds), else the reconciler resolves it.
            hold = await self._look(opened, exc, log)
        # The hold is recorded — unless the reconciler took the unknown hold over (this
        # request outlived its lease): it releases what it finds, and so does this accept
        # (same key), never adopting it. Stopped while the hold request was in flight (the
        # agent's suspension, a stop): the hold is recorded, so it can be released, but the
        # charge never starts.
        placed = HoldPlaced(hold.reference, hold.status, hold.amount_minor, self._now())
        _, session, actions = await session_effects.decide_locked(self._db, session_id, placed)
        assert session is not None
        for action in actions:
            match action:
                case RefundCharge(reference=reference, detail=detail):
                    await self._settlement.refund_charge(session_id, reference, detail)
                    raise PaymentUnavailable(
                        "the hold's outcome is being resolved; it will be released"
                    )
                case Cancel(reference=reference):
                    await self._void(session, reference, log)
                    raise PaymentUnavailable(
                        "the hold's outcome is being resolved; it will be released"
                    )
                case ReleaseStopped():
                    await self._release_stopped(session, log)
                case _:
                    pass
        await session_effects.announce(session, actions, self._events)
        self.last_accept_s = time.perf_counter() - started
        log.info(
            "session.authorized",
            reference=hold.reference,
            cap=cap.amount,
            accept_s=round(self.last_accept_s, 4),
        )
        await self._start(commands, session, log)
        started_s = time.perf_counter() - started
        log.info("session.start_accepted", started_s=round(started_s, 4))
        async with self._db.reader() as unit:
            fresh = await SqlSessions(unit).get(session_id)
            assert fresh is not None
            session = fresh
        self.timings.append(AcceptTiming(self.last_accept_s, started_s))
        headers: dict[str, str] = {}
        if session.charged:  # paid now: the charge spec's receipt, on this 201
            headers = {
                "Payment-Receipt": charge_receipt(hold.reference, now, offer.offer_id),
                "Cache-Control": RECEIPT_CACHE_CONTROL,
            }
        return session_view(session), headers

    async def _open_session(
        self,
        agent_id: str,
        neg: NegotiationRow,
        offer: OfferRow,
        cap: Money,
        verified: VerifiedCredential,
        session_id: str,
        now: datetime,
        payer_method: str | None = None,
    ) -> Session:
        """Unit 1: consume the challenge, reserve the limits, create the session (pending).

        An unregistered payer (`payer_method` given) is also held to its payment
        method's daily ceiling and the operator's block on it (open_payers).

        Returns the stored session: the hold request is built from it alone.
        """
        try:
            async with self._db.session() as session:
                challenge = await session.get(ChallengeRow, verified.challenge_id)
                if challenge is None or challenge.agent_id != agent_id:
                    raise InvalidCredential("challenge unknown to this station or agent")
                if not await consume_challenge(session, verified.challenge_id, now):
                    raise InvalidCredential("credential already used")
                await _check_not_accepted(session, neg.negotiation_id, lock=True)
                if payer_method is not None:
                    await open_payers.check_method(
                        SqlUnitOfWork.bound(session), self._settings, payer_method, cap, now
                    )
                await limits.reserve(
                    SqlUnitOfWork.bound(session),
                    agent_id=agent_id,
                    session_id=session_id,
                    amount=cap.amount,
                    currency=cap.currency,
                )
                opened = Session(
                    session_id=session_id,
                    agent_id=agent_id,
                    negotiation_id=neg.negotiation_id,
                    offer_id=offer.offer_id,
                    challenge_id=verified.challenge_id,
                    charge_point_id=neg.charge_point_id,
                    evse_id=neg.evse_id,
                    id_token=new_id_token(),
                    remote_start_id=secrets.randbelow(2**31 - 1) + 1,
                    tariff_doc=offer.tariff,
                    cap=cap,
                    status=SessionStatus.AUTHORIZED,
                    payment=Payment(
                        intent=MppIntent(verified.intent),
                        status=PaymentStatus.PENDING,
                        source=f"{verified.source.kind}:{verified.source.value}",
                        payer_method=payer_method,
                    ),
                    created_at=now,
                    updated_at=now,
                    cost=cap * 0,
                )
                sessions = SqlSessions(session)
                await sessions.add(opened)
                await audit.record(
                    session,
                    actor=f"agent:{agent_id}",
                    action="payment.hold_requested",
                    subject=session_id,
                    data={
                        "challenge_id": verified.challenge_id,
                        "cap": cap.to_wire(),
                        "offer_id": offer.offer_id,
                        "source": verified.source.kind,
                        "intent": verified.intent,
                        **({"payment_method": payer_method} if payer_method else {}),
                    },
                )
            return opened
        except AlreadyExists as exc:  # the backstop: one live session per negotiation
            if exc.key != "negotiation":
                raise
            raise NegotiationClosed("negotiation already accepted") from exc

    async def _release_stopped(self, row: Session, log: Any) -> NoReturn:
        """The session was stopped during the hold request: release the hold, start nothing.

        A session still open settles through the normal path (a cancel intent, then
        Stripe); one already final (it was given up on as having no hold) has its hold
        released directly. Raises AgentSuspended when that is why, else Conflict.
        """
        log.warning("session.stopped_during_hold", status=row.status, stop_reason=row.stop_reason)
        if row.status.final:
            await self._settlement.release_hold(row.session_id)
        else:
            await self._settlement.settle(row.session_id, reason=row.stop_reason)
        async with self._db.reader() as session:
            agent = await session.get(AgentRow, row.agent_id)
            suspended = agent is not None and agent.status != "active"
        if suspended or row.stop_reason == AGENT_SUSPENDED:
            raise AgentSuspended(f"agent {row.agent_id} was suspended; the hold was released")
        raise Conflict("the session was stopped before its hold was placed; the hold was released")

    async def _start(self, commands: ChargePointCommands, row: Session, log: Any) -> None:
        """RemoteStart / RequestStart. Refused, or never sent: the hold is released and
        StationUnavailable raised. Sent and unanswered (a timeout, the link lost while
        it was in flight) the outcome is unknown — the charge point may be charging, its
        start still queued — so the session proceeds as authorised: its start is billed
        when it comes, and the reconciler's start timeout releases the hold if none does.
        """
        on_21 = commands.ocpp_version(row.charge_point_id) == OcppVersion.V21.value
        was_connected = commands.is_connected(row.charge_point_id)
        try:
            accepted = await commands.start_transaction(
                row.charge_point_id,
                evse_id=row.evse_id,
                id_token=row.id_token,
                remote_start_id=row.remote_start_id,
                max_cost=row.cap.amount if on_21 else None,
            )
        except (ChargePointTimeout, ChargePointNotConnected, TimeoutError) as exc:
            if was_connected:
                log.warning("session.start_unknown", error=type(exc).__name__, detail=str(exc))
                return
            log.warning("session.start_failed", error=str(exc))
            accepted = False
        except StationUnavailable as exc:
            log.warning("session.start_failed", error=exc.detail)
            accepted = False
        if not accepted:
            log.warning("session.start_rejected")
            await self._settlement.settle(row.session_id, reason="start_rejected")
            raise StationUnavailable("the charge point did not start; the hold was released")

    async def _look(self, row: Session, error: PaymentUnavailable, log: Any) -> PaymentIntentState:
        """A hold request whose outcome is unknown: find what Stripe made for the session.

        A placed hold is adopted and returned. Otherwise the session stays authorised
        with ``payment_status = unknown`` (never a final failure while the outcome is
        unknown), the agent hears 503, and the reconciler resolves it after the lease.
        """
        try:
            found = await self._gateway.find_hold(
                row.session_id, created_after=row.created_at - HOLD_LOOKBACK
            )
        except PaymentUnavailable as exc:
            log.warning("payment.hold_unknown", error=error.detail, look=exc.detail)
            found = None
        decision = resolve_hold(
            found.status if found else None,
            may_adopt=True,
            charged=row.charged,
        )
        if found is not None and decision is HoldDecision.ADOPT:
            log.warning("payment.hold_adopted", reference=found.reference, error=error.detail)
            return found
        if found is not None and decision is HoldDecision.RELEASE:
            await self._void(row, found.reference, log)
        await self._unknown(row.session_id, error)
        raise error

    async def _void(self, row: Session, reference: str, log: Any) -> None:
        """Cancel a hold this accept will not use (the key every releaser of it uses)."""
        try:
            await self._gateway.cancel(reference, idempotency_key=rules.void_key(row))
        except PaymentUnavailable as exc:
            log.warning("payment.void_deferred", reference=reference, error=exc.detail)

    async def _unknown(self, session_id: str, exc: PaymentUnavailable) -> None:
        """Hand a hold of unknown outcome to the reconciler (unless it has it already)."""
        event = HoldUnknown(exc.code, exc.detail, self._now())
        await session_effects.decide_locked(self._db, session_id, event)

    async def _fail(self, session_id: str, exc: ChargepayError) -> None:
        """The hold was refused: the session fails (through the state machine) and its
        allowance is released."""
        event = HoldFailed(exc.code, exc.detail, self._now())
        _, session, actions = await session_effects.decide_locked(self._db, session_id, event)
        if session is not None:
            await session_effects.announce(session, actions, self._events)
