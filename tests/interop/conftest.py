"""The interop tests use the OCPP tests' station (CP-1..CP-3 registered)."""

from __future__ import annotations

from tests.ocpp.conftest import station

__all__ = ["station"]
