"""The vehicle agent: what a car maker embeds to buy a charge from a chargepay station.

goal        what the car needs (energy, departure, budget, power)
terms       the station's wire values (tariff, offer, negotiation reply)
estimate    the agent's own estimate of a session's cost under a tariff
strategy    pure negotiation: reservation price, concession, counter, walk away
wallet      the payment instrument and the spend policy (per session, per day)
payer       MPP: check a 402 challenge against the deal, build the credential
receipt     recompute a settled session's receipt; accept or dispute
errors      the agent's exception tree (problem+json codes mapped to classes)
client      the signed HTTP client for one station (PROTOCOL §2–§4)
follower    follow a session: Server-Sent Events, falling back to polling
agent       `VehicleAgent.charge(goal, stations)`: the façade
cli         the `chargepay agent` typer sub-app
"""
