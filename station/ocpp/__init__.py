"""OCPP 1.6J / 2.0.1 / 2.1 adapters on `websockets` + `ocpp`."""
