"""The agent's exception tree: station refusals by problem code, and its own refusals.

    AgentError
    ├── StationError                    a problem+json answer (PROTOCOL error codes)
    │   ├── Unauthenticated             401 unauthenticated
    │   ├── AgentSuspended              403 agent_suspended
    │   ├── AmountExceeded              403 amount_exceeded
    │   ├── ValidationFailed            422 validation_error
    │   ├── CapTooLow                   422 cap_too_low
    │   ├── NotFound                    404 not_found
    │   ├── Conflict                    409
    │   │   ├── NegotiationClosed           negotiation_closed
    │   │   ├── OfferExpired                offer_expired
    │   │   └── NotSettled                  not_settled
    │   ├── PaymentRefused              402
    │   │   ├── PaymentDeclined             payment_declined (carries the fresh challenge)
    │   │   └── InvalidCredential           invalid_credential
    │   ├── RateLimited                 429 rate_limited
    │   └── StationUnavailable          503 station_unavailable, network failures
    ├── ProtocolViolation               the station answered outside PROTOCOL.md
    ├── ChallengeMismatch               a 402 challenge differs from the deal: not paid
    ├── SpendLimitExceeded              the wallet's own per-session / per-day limit
    └── NoDeal                          no station offered terms within the goal

`problem_error(status, doc)` maps a problem document to its class; an unknown
code falls back on the status (409 → Conflict, 402 → PaymentRefused, …).
"""

from __future__ import annotations

from typing import Any, ClassVar


class AgentError(Exception):
    """Anything that stops the agent from buying a charge."""


class StationError(AgentError):
    code: ClassVar[str] = "station_error"
    status: ClassVar[int] = 0

    def __init__(
        self, detail: str, *, status: int | None = None, problem: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.http_status = status if status is not None else self.status
        self.problem = problem or {}

    def __str__(self) -> str:
        return f"{self.code} ({self.http_status}): {self.detail}"


class Unauthenticated(StationError):
    code, status = "unauthenticated", 401


class AgentSuspended(StationError):
    code, status = "agent_suspended", 403


class AmountExceeded(StationError):
    code, status = "amount_exceeded", 403


class ValidationFailed(StationError):
    code, status = "validation_error", 422


class CapTooLow(StationError):
    code, status = "cap_too_low", 422


class NotFound(StationError):
    code, status = "not_found", 404


class Conflict(StationError):
    code, status = "conflict", 409


class NegotiationClosed(Conflict):
    code = "negotiation_closed"


class OfferExpired(Conflict):
    code = "offer_expired"


class NotSettled(Conflict):
    code = "not_settled"


class PaymentRefused(StationError):
    code, status = "payment_required", 402

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        problem: dict[str, Any] | None = None,
        www_authenticate: str | None = None,
    ) -> None:
        super().__init__(detail, status=status, problem=problem)
        # The fresh challenge a 402 carries (PaymentDeclined); never paid blindly.
        self.www_authenticate = www_authenticate


class PaymentDeclined(PaymentRefused):
    code = "payment_declined"


class InvalidCredential(PaymentRefused):
    code = "invalid_credential"


class RateLimited(StationError):
    code, status = "rate_limited", 429


class StationUnavailable(StationError):
    code, status = "station_unavailable", 503


class NoAnswer(StationUnavailable):
    """The request went out and no answer came back (timeout, connection lost): what
    the station did with it is unknown. `http_status` is 0."""

    status = 0


class ProtocolViolation(AgentError):
    """The station answered something PROTOCOL.md does not allow."""


class ChallengeMismatch(AgentError):
    """A payment challenge that is not what was agreed; the agent did not pay it."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__("challenge refused: " + "; ".join(reasons))
        self.reasons = reasons


class SpendLimitExceeded(AgentError):
    """Paying would break the wallet's own spend policy."""


class NoDeal(AgentError):
    """No station offered terms within the goal (the agent walked away)."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__("no deal: " + "; ".join(reasons))
        self.reasons = reasons


_BY_CODE: dict[str, type[StationError]] = {
    cls.code: cls
    for cls in (
        Unauthenticated,
        AgentSuspended,
        AmountExceeded,
        ValidationFailed,
        CapTooLow,
        NotFound,
        NegotiationClosed,
        OfferExpired,
        NotSettled,
        PaymentDeclined,
        InvalidCredential,
        RateLimited,
        StationUnavailable,
    )
}
_BY_STATUS: dict[int, type[StationError]] = {
    401: Unauthenticated,
    404: NotFound,
    409: Conflict,
    402: PaymentRefused,
    422: ValidationFailed,
    429: RateLimited,
    502: StationUnavailable,
    503: StationUnavailable,
    504: StationUnavailable,
}


def problem_error(
    status: int, doc: dict[str, Any] | None, *, www_authenticate: str | None = None
) -> StationError:
    """The exception for an error answer (`doc` is its problem+json body, if any)."""
    doc = doc or {}
    code = doc.get("code")
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = _BY_STATUS.get(status, StationError)
    detail = str(doc.get("detail") or doc.get("title") or f"HTTP {status}")
    if issubclass(cls, PaymentRefused):
        return cls(detail, status=status, problem=doc, www_authenticate=www_authenticate)
    return cls(detail, status=status, problem=doc)
