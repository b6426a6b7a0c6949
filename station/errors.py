"""One exception tree for the station; each class carries its wire mapping.

    ChargepayError                      (problem code, HTTP status, OCPP error)
    ├── ValidationError                 validation_error      422  FormatViolation
    │   └── StoreRefused                                           PropertyConstraintViolation
    ├── NotFound                        not_found             404  PropertyConstraintViolation
    ├── Unauthenticated                 unauthenticated       401  SecurityError
    ├── AgentSuspended                  agent_suspended       403  SecurityError
    ├── AmountExceeded                  amount_exceeded       403
    ├── CrossSiteRefused                cross_site_refused    403
    ├── CapTooLow                       cap_too_low           422
    ├── Conflict                                              409
    │   ├── NegotiationClosed           negotiation_closed
    │   ├── OfferExpired                offer_expired
    │   └── NotSettled                  not_settled
    ├── PaymentRequired                                       402
    │   ├── PaymentDeclined             payment_declined
    │   └── InvalidCredential           invalid_credential
    │       ├── MalformedCredential
    │       ├── ChallengeExpired
    │       └── VerificationFailed
    ├── RateLimited                     rate_limited          429
    ├── StationUnavailable              station_unavailable   503  GenericError
    │   ├── ChargePointNotConnected
    │   ├── ChargePointTimeout
    │   └── StoreUnavailable
    │       └── TransactionNotStored                               (no answer: see below)
    ├── PaymentUnavailable              station_unavailable   503
    ├── IllegalTransition               internal_error        500  InternalError
    └── InternalError                   internal_error        500  InternalError

A `TransactionNotStored` is not answered with a CALLERROR: OCPP lets a charge
point discard a transaction message the central system answered with one.
The connection is closed instead (1013, try again later), and the charge point
sends the message again once reconnected (`station.ocpp.connection`).

A class may also name its problem `type`: the payment errors use the URIs
the MPP core spec defines (`https://paymentauth.org/problems/…`), with the
stable `code` beside them; the others are `https://chargepay.dev/problems/…`.

Business refusals (a Rejected authorisation, an Invalid id token) are
statuses in replies, not exceptions. One renderer per protocol turns these
into a problem+json body (`station.api.problems`) or a CALLERROR
(`station.ocpp`); anything unmapped renders as `InternalError` without
internals.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ChargepayError(Exception):
    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    # OCPP 2.x spelling; 1.6 spells FormatViolation as FormationViolation.
    ocpp_error: ClassVar[str] = "InternalError"
    # The problem document's `type`, when a spec defines one (else chargepay's, from `code`).
    problem_type: ClassVar[str | None] = None

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        # Extra members of the problem document (e.g. the remaining allowance).
        self.extra = extra


class ValidationError(ChargepayError):
    code, status, title, ocpp_error = (
        "validation_error",
        422,
        "Invalid request",
        "FormatViolation",
    )


class NotFound(ChargepayError):
    code, status, title, ocpp_error = (
        "not_found",
        404,
        "Not found",
        "PropertyConstraintViolation",
    )


class Unauthenticated(ChargepayError):
    code, status, title, ocpp_error = ("unauthenticated", 401, "Unauthenticated", "SecurityError")


class AgentSuspended(ChargepayError):
    code, status, title, ocpp_error = ("agent_suspended", 403, "Agent suspended", "SecurityError")


class AmountExceeded(ChargepayError):
    code, status, title = "amount_exceeded", 403, "Amount exceeds the agent's limits"


class PaymentMethodBlocked(ChargepayError):
    """An unregistered payer's payment method the operator has blocked (kill switch)."""

    code, status, title = "payment_method_blocked", 403, "Payment method blocked"


class CrossSiteRefused(ChargepayError):
    """A dashboard change without its CSRF token, or sent from another origin."""

    code, status, title = "cross_site_refused", 403, "Cross-site request refused"


class CapTooLow(ChargepayError):
    code, status, title = "cap_too_low", 422, "Cap below the tariff's minimum"


class Conflict(ChargepayError):
    code, status, title = "conflict", 409, "Conflict"


class NegotiationClosed(Conflict):
    code, title = "negotiation_closed", "Negotiation closed"


class OfferExpired(Conflict):
    code, title = "offer_expired", "Offer expired"


class NotSettled(Conflict):
    code, title = "not_settled", "Session not settled"


PAYMENTAUTH = "https://paymentauth.org/problems/"


class PaymentRequired(ChargepayError):
    code, status, title = "payment_required", 402, "Payment required"
    problem_type: ClassVar[str | None] = PAYMENTAUTH + "payment-required"


class PaymentDeclined(PaymentRequired):
    code, title = "payment_declined", "Payment declined"
    problem_type = None  # the core spec has no type for a declined card


class InvalidCredential(PaymentRequired):
    """Challenge unknown, already used or not issued here (MPP: invalid-challenge)."""

    code, title = "invalid_credential", "Invalid payment credential"
    problem_type = PAYMENTAUTH + "invalid-challenge"


class MalformedCredential(InvalidCredential):
    problem_type = PAYMENTAUTH + "malformed-credential"


class ChallengeExpired(InvalidCredential):
    problem_type = PAYMENTAUTH + "payment-expired"


class VerificationFailed(InvalidCredential):
    """The credential does not match the challenge's request (offer, cap, externalId)."""

    problem_type = PAYMENTAUTH + "verification-failed"


class RateLimited(ChargepayError):
    code, status, title = "rate_limited", 429, "Too many requests"

    def __init__(self, detail: str = "", retry_after_s: int | None = None, **extra: Any) -> None:
        if retry_after_s is not None:
            extra["retry_after_s"] = retry_after_s
        super().__init__(detail, **extra)
        # Rendered as the HTTP Retry-After header (station.api.problems).
        self.headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None


class StationUnavailable(ChargepayError):
    code, status, title, ocpp_error = (
        "station_unavailable",
        503,
        "Station unavailable",
        "GenericError",
    )


class StoreRefused(ValidationError):
    """The database refused a value of this message alone (the writer isolated it)."""

    title, ocpp_error = "Value cannot be stored", "PropertyConstraintViolation"


class StoreUnavailable(StationUnavailable):
    """The database could not commit (connection lost or refused, shut down, locked)."""

    title = "Database unavailable"


class TransactionNotStored(StoreUnavailable):
    """A transaction message could not be committed: the charge point must send it again."""

    title = "Transaction message not stored"


class ChargePointNotConnected(StationUnavailable):
    title = "Charge point not connected"


class ChargePointTimeout(StationUnavailable):
    title = "Charge point did not answer in time"


class PaymentUnavailable(StationUnavailable):
    title = "Payment provider unavailable"


class IllegalTransition(ChargepayError):
    """A state machine was asked for a move it does not allow (a bug, not input)."""

    title = "Illegal state transition"


class InternalError(ChargepayError):
    pass
