"""OCPP 1.6J / 2.0.1 / 2.1 adapters on `websockets` + `ocpp`.

    server.py      CentralSystem: the listener, charge point security (Basic,
                   TLS, mutual TLS, failure rate limit) and the commands the
                   services send (ChargePointCommands)
    connection.py  one connection: frame loop, in-line schema validation,
                   CALLERRORs, outgoing-call queue, the frame log
    v16.py, v201.py, v21.py
                   thin per-version translators to `station.domain.events`
    readings.py    meter values from each wire shape; costs back to the wire
    ports.py       ChargingEvents: what the adapters need from the services

Every message a charge point sends is answered (a CALLRESULT or a CALLERROR),
after the data it carried is committed (`station.store.writer`).
"""
