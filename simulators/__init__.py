"""Simulators: charge points of every OCPP version, EV batteries, fleets, the Stripe sandbox."""
