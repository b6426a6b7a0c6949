"""Adversarial tests: the e2e fixtures (a running station, localstripe, a signed agent)
and the OCPP ones (a station with CP-1..CP-3 registered)."""

from __future__ import annotations

from tests.e2e.conftest import make_world, stripe_client, world
from tests.ocpp.conftest import ocpp_url, station

__all__ = ["make_world", "ocpp_url", "station", "stripe_client", "world"]
