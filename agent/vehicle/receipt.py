"""Receipt verification: recompute a settled session's receipt; accept it or dispute it.

Pure. The agent checks the receipt body and its `Payment-Receipt` header
(PROTOCOL §4) against what it agreed — the session, the tariff, the cap and
the payment reference it saw at authorisation:

- the header parses (pympp), says method `stripe`, and its `reference` is the
  session's payment reference; a capture receipt (draft-stripe-authorize-00)
  says intent `authorize`, echoes the challenge's `externalId` (the offer id)
  and its `capturedAmount` and `delta` are what the body says was captured;
- the body is for this session, in the agreed currency, under the agreed tariff;
- `meter_stop_wh − meter_start_wh` is the billed energy;
- every cost line is at the agreed tariff's unit price for its kind and is
  quantity × unit price to within the minor unit the station may move it by
  when spreading the once-rounded total over the lines; the energy line bills
  exactly the metered energy; minimum / maximum lines only under a tariff
  with that bound;
- the lines sum to the total, and the total is the energy × price + fee
  (+ time, idle), bounded by the tariff's minimum / maximum, rounded once
  half-up, then capped — recomputed, not read;
- captured = min(total, cap) ≤ cap, released = cap − captured;
- paid on the `charge` intent (the cap charged at once, the unused part
  refunded): the body says intent `charge`, charged = cap, refunded = cap −
  captured and released = 0, and the header says intent `charge` with
  `chargedAmount` and `refundedAmount` (minor units) to match.

A receipt that fails any check is a `Dispute` listing every reason.

The body's `signature` is the station's Ed25519 signature over the body's
RFC 8785 (JCS) canonical JSON without `signature`, base64url; its public key
is published at `GET /v1/receipt-key` (an addition to PROTOCOL v1). Given that
key, a bad signature is a reason; without it the check is noted as not done.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from mpp import Receipt
from mpp._parsing import ParseError

from vehicle.errors import ProtocolViolation
from vehicle.money import Money, MoneyError, minor_unit_exponent
from vehicle.terms import Tariff, wire_decimal

SIGNATURE_GAP = "station signature not checked: no receipt key"
SIGNATURE_OK = "station signature verified"


@dataclass(frozen=True, slots=True)
class CostLine:
    kind: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ReceiptBody:
    session_id: str
    energy_kwh: Decimal
    meter_start_wh: int
    meter_stop_wh: int
    tariff: Tariff
    cost_lines: tuple[CostLine, ...]
    total: Decimal
    captured: Decimal
    released: Decimal
    currency: str
    signature: str | None
    intent: str = "authorize"
    charged: Decimal | None = None
    refunded: Decimal | None = None

    @classmethod
    def from_wire(cls, doc: Any) -> ReceiptBody:
        if not isinstance(doc, dict):
            raise ProtocolViolation("receipt: expected an object")
        start, stop = doc.get("meter_start_wh"), doc.get("meter_stop_wh")
        if not (isinstance(start, int) and isinstance(stop, int)) or bool in (
            type(start),
            type(stop),
        ):
            raise ProtocolViolation(f"receipt meters: {start!r}, {stop!r}")
        lines = doc.get("cost_lines")
        if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
            raise ProtocolViolation("receipt.cost_lines: expected a list of objects")
        return cls(
            session_id=str(doc.get("session_id")),
            energy_kwh=wire_decimal(doc, "energy_kwh"),
            meter_start_wh=start,
            meter_stop_wh=stop,
            tariff=Tariff.from_wire(doc.get("tariff")),
            cost_lines=tuple(
                CostLine(
                    kind=str(line.get("kind")),
                    quantity=wire_decimal(line, "quantity"),
                    unit_price=wire_decimal(line, "unit_price"),
                    amount=wire_decimal(line, "amount"),
                )
                for line in lines
            ),
            total=wire_decimal(doc, "total"),
            captured=wire_decimal(doc, "captured"),
            released=wire_decimal(doc, "released"),
            currency=str(doc.get("currency")),
            signature=doc.get("signature") if isinstance(doc.get("signature"), str) else None,
            intent=str(doc.get("intent", "authorize")),
            charged=wire_decimal(doc, "charged") if "charged" in doc else None,
            refunded=wire_decimal(doc, "refunded") if "refunded" in doc else None,
        )


@dataclass(frozen=True, slots=True)
class AgreedSession:
    """What the agent knows independently of the receipt."""

    session_id: str
    tariff: Tariff
    cap: Money
    payment_reference: str
    # The challenge's externalId (the offer id), echoed by the capture receipt.
    offer_id: str | None = None
    # The MPP intent the agent paid on: `authorize` (a hold) or `charge`.
    intent: str = "authorize"


@dataclass(frozen=True, slots=True)
class Verdict:
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    body: ReceiptBody | None = None
    header: Receipt | None = None

    @property
    def accepted(self) -> bool:
        return not self.reasons

    @property
    def kind(self) -> str:
        return "accepted" if self.accepted else "dispute"


def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit_exponent(currency))


def _unit_price(tariff: Tariff, kind: str) -> Decimal | None:
    return {
        "energy": tariff.energy_price_per_kwh,
        "session_fee": tariff.session_fee,
        "time": tariff.time_price_per_hour,
        "idle": tariff.idle_fee_per_minute,
    }.get(kind)


def _check_header(header: str | None, agreed: AgreedSession) -> tuple[list[str], Receipt | None]:
    if not header:
        return ["no Payment-Receipt header"], None
    try:
        receipt = Receipt.from_payment_receipt(header)
    except (ParseError, ValueError) as exc:
        return [f"Payment-Receipt header unreadable: {exc}"], None
    reasons = []
    if receipt.method != "stripe":
        reasons.append(f"Payment-Receipt method {receipt.method!r}, expected 'stripe'")
    if receipt.reference != agreed.payment_reference:
        reasons.append(
            f"Payment-Receipt reference {receipt.reference!r} is not the session's payment "
            f"{agreed.payment_reference!r}"
        )
    if agreed.offer_id is not None and receipt.external_id != agreed.offer_id:
        reasons.append(
            f"Payment-Receipt externalId {receipt.external_id!r}, expected the challenge's "
            f"{agreed.offer_id!r}"
        )
    intent = (receipt.extensions or {}).get("intent")
    if intent != agreed.intent and not (intent is None and agreed.intent == "authorize"):
        reasons.append(f"Payment-Receipt intent {intent!r}, expected {agreed.intent!r}")
    return reasons, receipt


def _check_captured_header(receipt: Receipt | None, body: ReceiptBody) -> list[str]:
    """The capture receipt's `capturedAmount` and `delta` (minor units) against the body."""
    if receipt is None or not receipt.extensions:
        return []

    def minor(amount: Decimal | None) -> str:
        return str(Money(amount or Decimal(0), body.currency).rounded().to_minor_units())

    wants = {"capturedAmount": minor(body.captured), "delta": minor(body.captured)}
    if body.intent == "charge":
        wants = {"chargedAmount": minor(body.charged), "refundedAmount": minor(body.refunded)}
    return [
        f"Payment-Receipt {name} {receipt.extensions[name]!r}, the receipt says {want}"
        for name, want in wants.items()
        if name in receipt.extensions and receipt.extensions[name] != want
    ]


def _check_line(line: CostLine, body: ReceiptBody, agreed: AgreedSession) -> list[str]:
    """One line against the agreed tariff; a station may move a line by < one minor unit
    when it spreads the once-rounded total over the lines (largest remainder)."""
    tariff, quantum = agreed.tariff, _quantum(agreed.cap.currency)
    if line.kind in ("minimum", "maximum", "cap"):
        allowed = {"minimum": tariff.min_cost, "maximum": tariff.max_cost, "cap": True}
        if allowed[line.kind] is None:
            return [f"{line.kind} line under a tariff without one"]
        return []
    price = _unit_price(tariff, line.kind)
    if price is None:
        return [f"unknown cost line {line.kind!r}"]
    reasons = []
    if line.unit_price != price:
        reasons.append(f"{line.kind} line at {line.unit_price}, agreed {price}")
    if line.kind == "energy" and line.quantity != body.energy_kwh:
        reasons.append(f"energy line bills {line.quantity} kWh, delivered {body.energy_kwh}")
    if line.kind == "session_fee" and line.quantity != 1:
        reasons.append(f"session fee billed {line.quantity} times")
    # time and idle quantities are shown to 3 places: allow for that rounding too
    slack = quantum if line.kind in ("energy", "session_fee") else quantum + price / 2000
    exact = line.quantity * price
    if line.quantity < 0 or abs(line.amount - exact) >= slack:
        reasons.append(f"{line.kind} line: {line.quantity} × {price} is {exact}, not {line.amount}")
    return reasons


def _expected_total(body: ReceiptBody, agreed: AgreedSession) -> tuple[Decimal, Decimal]:
    """The total recomputed from the energy and the agreed tariff, and its tolerance."""
    tariff, quantum = agreed.tariff, _quantum(agreed.cap.currency)
    subtotal = body.energy_kwh * tariff.energy_price_per_kwh + tariff.session_fee
    tolerance = Decimal(0)
    for line in body.cost_lines:
        if line.kind in ("time", "idle"):
            price = _unit_price(tariff, line.kind) or Decimal(0)
            subtotal += line.quantity * price
            tolerance += price / 2000
    if tariff.min_cost is not None:
        subtotal = max(subtotal, tariff.min_cost)
    if tariff.max_cost is not None:
        subtotal = min(subtotal, tariff.max_cost)
    uncapped = Money(subtotal, agreed.cap.currency).rounded().amount
    return min(uncapped, agreed.cap.amount), (tolerance + quantum if tolerance else Decimal(0))


def _check_lines(body: ReceiptBody, agreed: AgreedSession) -> list[str]:
    reasons = []
    for line in body.cost_lines:
        reasons += _check_line(line, body, agreed)
    kinds = [line.kind for line in body.cost_lines]
    for kind in ("energy", "session_fee", "cap", "minimum", "maximum"):
        if kinds.count(kind) > 1:
            reasons.append(f"{kinds.count(kind)} {kind} lines")
    if agreed.tariff.session_fee and "session_fee" not in kinds:
        reasons.append("no session fee line")
    lines_total = sum((line.amount for line in body.cost_lines), Decimal(0))
    if body.total != lines_total:
        reasons.append(f"total {body.total} is not the sum of the lines {lines_total}")
    expected, tolerance = _expected_total(body, agreed)
    if abs(body.total - expected) > tolerance:
        reasons.append(
            f"total {body.total}; {body.energy_kwh} kWh under the agreed tariff come to {expected}"
        )
    return reasons


def _check_amounts(body: ReceiptBody, agreed: AgreedSession) -> list[str]:
    reasons = []
    cap = agreed.cap.amount
    if body.captured > cap:
        reasons.append(f"captured {body.captured} exceeds the cap {cap}")
    if body.captured < 0 or body.total < 0:
        reasons.append("negative amount")
    if body.captured != min(body.total, cap):
        reasons.append(f"captured {body.captured}, the total capped is {min(body.total, cap)}")
    unused = cap - body.captured
    if body.intent != agreed.intent:
        reasons.append(f"receipt intent {body.intent!r}, paid on {agreed.intent!r}")
    if agreed.intent == "charge":
        if body.charged != cap:
            reasons.append(f"charged {body.charged}, the cap charged was {cap}")
        if body.refunded != unused:
            reasons.append(f"refunded {body.refunded}, cap − captured is {unused}")
        if body.released != 0:
            reasons.append(f"released {body.released} on a charge (nothing is held)")
    elif body.released != unused:
        reasons.append(f"released {body.released}, cap − captured is {unused}")
    return reasons


def signature_valid(doc: dict[str, Any], public_key_b64: str) -> bool:
    """The station's Ed25519 signature over the JCS body without `signature`."""
    signature = doc.get("signature")
    if not isinstance(signature, str):
        return False
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(
            base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
            rfc8785.dumps(unsigned),
        )
    except (InvalidSignature, ValueError, TypeError, rfc8785.CanonicalizationError):
        return False
    return True


def verify_receipt(
    doc: Any, header: str | None, agreed: AgreedSession, receipt_key_b64: str | None = None
) -> Verdict:
    """Accept the receipt, or dispute it with every reason found."""
    header_reasons, receipt = _check_header(header, agreed)
    try:
        body = ReceiptBody.from_wire(doc)
    except (ProtocolViolation, MoneyError) as exc:
        return Verdict((*header_reasons, f"receipt body malformed: {exc}"), header=receipt)
    reasons = list(header_reasons)
    if body.session_id != agreed.session_id:
        reasons.append(f"receipt for {body.session_id!r}, not {agreed.session_id!r}")
    if body.currency != agreed.cap.currency or body.tariff.currency != agreed.cap.currency:
        reasons.append(
            f"receipt in {body.currency}/{body.tariff.currency}, agreed {agreed.cap.currency}"
        )
        return Verdict(tuple(reasons), body=body, header=receipt)
    if body.tariff != agreed.tariff:
        reasons.append("receipt tariff differs from the agreed tariff")
    metered_kwh = Decimal(body.meter_stop_wh - body.meter_start_wh) / 1000
    if body.meter_stop_wh < body.meter_start_wh or metered_kwh != body.energy_kwh:
        reasons.append(
            f"meters {body.meter_start_wh}→{body.meter_stop_wh} Wh give {metered_kwh} kWh, "
            f"billed {body.energy_kwh}"
        )
    reasons += _check_lines(body, agreed)
    reasons += _check_amounts(body, agreed)
    reasons += _check_captured_header(receipt, body)
    notes: tuple[str, ...] = ()
    if receipt_key_b64 is None:
        notes = (SIGNATURE_GAP,)
    elif signature_valid(doc, receipt_key_b64):
        notes = (SIGNATURE_OK,)
    else:
        reasons.append("station signature does not verify with its receipt key")
    return Verdict(tuple(reasons), notes, body, receipt)
