"""The simulators are tested against a real station: reuse the OCPP fixtures."""

from tests.ocpp.conftest import ocpp_url, station

__all__ = ["ocpp_url", "station"]
