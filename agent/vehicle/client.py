"""The signed HTTP client for one station (PROTOCOL §2–§4).

Thin: each method is one request, answers are parsed into the agent's wire
values (`vehicle.terms`, `SessionView`), error answers become the agent's
exceptions (`vehicle.errors.problem_error`) and network failures become
`NoAnswer` (a `StationUnavailable` whose outcome is unknown). Every request
runs under `asyncio.timeout(timeout_s)`; every method is safe to cancel (no state
is kept between requests).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import httpx

from vehicle.errors import (
    NoAnswer,
    ProtocolViolation,
    StationError,
    StationUnavailable,
    problem_error,
)
from vehicle.goal import Goal
from vehicle.money import Money, MoneyError, check_currency
from vehicle.strategy import CounterTerms
from vehicle.terms import NegotiationReply, Tariff, format_time, wire_decimal

TERMINAL = frozenset({"settled", "cancelled", "failed"})


@dataclass(frozen=True, slots=True)
class StationTarget:
    """Where to buy: a station's base URL and one of its charge points."""

    base_url: str
    charge_point_id: str
    evse_id: int | None = None
    # The station's receipt-signing key (base64 Ed25519), pinned; else fetched.
    receipt_key: str | None = None
    # The agent's id at this station's operator, when it differs from the agent's default.
    agent_id: str | None = None

    @property
    def label(self) -> str:
        evse = f"/{self.evse_id}" if self.evse_id is not None else ""
        return f"{self.charge_point_id}{evse}@{self.base_url}"


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as the station shows it to its agent (PROTOCOL §4)."""

    session_id: str
    status: str
    currency: str
    cap: Money
    energy_kwh: Decimal
    cost: Money
    captured: Money | None
    tariff: Tariff | None
    payment_reference: str | None
    payment_status: str | None
    detail: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The MPP intent it was paid on: `authorize` (a hold) or `charge` (charged at once).
    payment_intent: str = "authorize"
    # The Payment-Receipt of the accept's 201 (a `charge` is paid then), if any.
    payment_receipt: str | None = field(default=None, compare=False, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_wire(cls, doc: Any) -> SessionView:
        if not isinstance(doc, dict) or not isinstance(doc.get("session_id"), str):
            raise ProtocolViolation(f"session: expected an object with a session_id, got {doc!r}")
        try:
            currency = check_currency(str(doc.get("currency")))
        except MoneyError as exc:
            raise ProtocolViolation(f"session.currency: {exc}") from exc
        payment: dict[str, Any] = doc["payment"] if isinstance(doc.get("payment"), dict) else {}
        captured = doc.get("captured")
        return cls(
            session_id=doc["session_id"],
            status=str(doc.get("status")),
            currency=currency,
            cap=Money(wire_decimal(doc, "cap"), currency),
            energy_kwh=wire_decimal(doc, "energy_kwh", "0"),
            cost=Money(wire_decimal(doc, "cost", "0"), currency),
            captured=Money(wire_decimal(doc, "captured"), currency) if captured else None,
            tariff=Tariff.from_wire(doc["tariff"]) if doc.get("tariff") else None,
            payment_reference=payment.get("reference"),
            payment_status=payment.get("status"),
            detail=doc.get("detail") if isinstance(doc.get("detail"), str) else None,
            raw=doc,
            payment_intent=str(payment.get("intent") or "authorize"),
        )


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One Server-Sent Event: its `event` name and its `data` (JSON when it parses)."""

    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class ReceiptDocument:
    header: str | None
    body: Any


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ProtocolViolation(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} without a JSON body"
        ) from exc


def _raise_for_problem(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        doc = response.json()
    except ValueError:
        doc = None
    raise problem_error(
        response.status_code,
        doc if isinstance(doc, dict) else None,
        www_authenticate=response.headers.get("www-authenticate"),
    )


def negotiation_request(goal: Goal, target: StationTarget) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "charge_point_id": target.charge_point_id,
        "energy_kwh": str(goal.energy_kwh),
        "currency": goal.currency,
    }
    if target.evse_id is not None:
        doc["evse_id"] = target.evse_id
    if goal.max_power_kw is not None:
        doc["max_power_kw"] = str(goal.max_power_kw)
    if goal.departure_at is not None:
        doc["departure_at"] = format_time(goal.departure_at)
    return doc


def counter_request(terms: CounterTerms) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if terms.energy_price_per_kwh is not None:
        doc["energy_price_per_kwh"] = str(terms.energy_price_per_kwh)
    if terms.max_power_kw is not None:
        doc["max_power_kw"] = str(terms.max_power_kw)
    if terms.departure_at is not None:
        doc["departure_at"] = format_time(terms.departure_at)
    return doc


class StationClient:
    """One station's agent API over a shared, signed `httpx.AsyncClient`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.http = http
        self.auth = auth
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def _request(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        url = f"{self.base_url}{path}"
        content = json.dumps(body).encode() if body is not None else None
        all_headers = {"Accept": "application/json, application/problem+json"}
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self.http.request(
                    method,
                    url,
                    content=content,
                    headers=all_headers,
                    auth=self.auth or httpx.USE_CLIENT_DEFAULT,
                )
        except TimeoutError as exc:
            raise NoAnswer(f"{method} {url}: no answer in {self.timeout_s} s") from exc
        except httpx.HTTPError as exc:
            raise NoAnswer(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc

    async def open_negotiation(self, goal: Goal, target: StationTarget) -> NegotiationReply:
        response = await self._request(
            "POST", "/v1/negotiations", body=negotiation_request(goal, target)
        )
        _raise_for_problem(response)
        return NegotiationReply.from_wire(_json(response))

    async def counter(self, negotiation_id: str, terms: CounterTerms) -> NegotiationReply:
        response = await self._request(
            "POST", f"/v1/negotiations/{negotiation_id}/counter", body=counter_request(terms)
        )
        _raise_for_problem(response)
        return NegotiationReply.from_wire(_json(response))

    async def accept(
        self, negotiation_id: str, offer_id: str, cap: Money, authorization: str | None = None
    ) -> SessionView:
        """Accept an offer with a cap. Without `authorization` the station answers
        402 (raised as `PaymentRefused` carrying `www_authenticate`)."""
        headers = {"Authorization": authorization} if authorization else None
        response = await self._request(
            "POST",
            f"/v1/negotiations/{negotiation_id}/accept",
            body={"offer_id": offer_id, "cap": cap.to_wire()},
            headers=headers,
        )
        _raise_for_problem(response)
        view = SessionView.from_wire(_json(response))
        return replace(view, payment_receipt=response.headers.get("payment-receipt"))

    async def session(self, session_id: str) -> SessionView:
        response = await self._request("GET", f"/v1/sessions/{session_id}")
        _raise_for_problem(response)
        return SessionView.from_wire(_json(response))

    async def stop(self, session_id: str) -> None:
        response = await self._request("POST", f"/v1/sessions/{session_id}/stop")
        _raise_for_problem(response)

    async def receipt(self, session_id: str) -> ReceiptDocument:
        response = await self._request("GET", f"/v1/sessions/{session_id}/receipt")
        _raise_for_problem(response)
        return ReceiptDocument(response.headers.get("payment-receipt"), _json(response))

    async def receipt_key(self) -> str | None:
        """The station's published receipt key (`GET /v1/receipt-key`), None if it has none."""
        response = await self._request("GET", "/v1/receipt-key")
        if response.status_code in (404, 405):
            return None
        _raise_for_problem(response)
        doc = _json(response)
        for name in ("public_key", "public_key_b64", "key"):
            if isinstance(doc, dict) and isinstance(doc.get(name), str):
                return str(doc[name])
        raise ProtocolViolation("GET /v1/receipt-key: no public_key")

    async def events(self, session_id: str, *, idle_timeout_s: float) -> AsyncIterator[ServerEvent]:
        """The session's Server-Sent Events until the station closes the stream.

        Raises `StationUnavailable` when no byte arrives for `idle_timeout_s`,
        and the status's error when the station refuses the stream (the
        follower then falls back to polling). Safe to cancel.
        """
        url = f"{self.base_url}/v1/sessions/{session_id}/events"
        timeout = httpx.Timeout(self.timeout_s, read=idle_timeout_s)
        try:
            async with self.http.stream(
                "GET",
                url,
                headers={"Accept": "text/event-stream"},
                timeout=timeout,
                auth=self.auth or httpx.USE_CLIENT_DEFAULT,
            ) as response:
                if not response.is_success:
                    await response.aread()
                    _raise_for_problem(response)
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    raise ProtocolViolation(f"GET {url}: not an event stream")
                async for event in parse_sse(response.aiter_lines()):
                    yield event
        except httpx.HTTPError as exc:
            raise StationUnavailable(f"GET {url}: {exc.__class__.__name__}: {exc}") from exc


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[ServerEvent]:
    """Server-Sent Events from lines: `event:`, `data:`, comments; a blank line ends one."""
    name, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload: Any = json.loads(text)
                except ValueError:
                    payload = text
                yield ServerEvent(name, payload)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)


__all__ = [
    "ReceiptDocument",
    "ServerEvent",
    "SessionView",
    "StationClient",
    "StationError",
    "StationTarget",
]
