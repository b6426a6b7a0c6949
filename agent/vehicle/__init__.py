"""The vehicle agent: what a car maker embeds to buy a charge from a chargepay station.

    from decimal import Decimal
    from vehicle import Goal, Instrument, Money, SpendLimits, StationTarget, VehicleAgent, Wallet
    from vehicle.signing import load_private_key

    wallet = Wallet(Instrument("pm_card_visa"),
                    SpendLimits(Money.parse("40.00", "usd"), Money.parse("100.00", "usd")))
    goal = Goal(Decimal(30), Money.parse("20.00", "usd"))
    async with VehicleAgent("agt_…", load_private_key(path), wallet) as agent:
        outcome = await agent.charge(goal, [StationTarget("https://cpo.example", "CP-1")])
    outcome.ok, outcome.verdict.reasons      # settled with a receipt that adds up?

It installs on its own (`pip install chargepay-agent`, the CLI with
`chargepay-agent[cli]`) and imports nothing from the station.

Modules:

    money       amounts: `Decimal` with a currency, one rounding rule
    logs        structured log lines (constant event names, data in fields)
    goal        what the car needs (energy, departure, budget, power)
    terms       the station's wire values (tariff, offer, negotiation reply)
    estimate    the agent's own estimate of a session's cost under a tariff
    strategy    pure negotiation: reservation price, concession, counter, walk away
    wallet      the payment instrument and the spend policy (per session, per day)
    payer       MPP: check a 402 challenge against the deal, build the credential
    spt         Shared Payment Tokens issued for each challenge (`StripeTokenIssuer`)
    receipt     recompute a settled session's receipt; accept or dispute
    errors      the agent's exception tree (problem+json codes mapped to classes)
    client      the signed HTTP client for one station (PROTOCOL §2–§4)
    follower    follow a session: Server-Sent Events, falling back to polling
    agent       `VehicleAgent.charge(goal, stations)`: the façade
    cli         the `chargepay-agent` command (`chargepay agent` in the station's CLI)
    signing     RFC 9421 request signing (an httpx Auth, or `SigningTransport`), agent keys
"""

from vehicle.agent import AgentEvent, ChargeOutcome, Deal, VehicleAgent
from vehicle.client import StationTarget
from vehicle.goal import Goal
from vehicle.money import Money
from vehicle.receipt import Verdict
from vehicle.wallet import Instrument, JsonFileLedger, MemoryLedger, SpendLimits, Wallet

__all__ = [
    "AgentEvent",
    "ChargeOutcome",
    "Deal",
    "Goal",
    "Instrument",
    "JsonFileLedger",
    "MemoryLedger",
    "Money",
    "SpendLimits",
    "StationTarget",
    "VehicleAgent",
    "Verdict",
    "Wallet",
]
