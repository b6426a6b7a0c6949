"""The composition root wires every part through its constructor (station.bootstrap).

Building opens nothing (the engine connects lazily), so the graph is checked
for both back ends without a database: every hook a part needs is the very
object the root built for it, no provider is left None, and no part holds a
lambda standing in for another.
"""

from __future__ import annotations

import types

import pytest

from station.bootstrap import Parts, build
from station.cluster.commands import ClusterCommands
from station.payments.stripe_gateway import StripeGateway
from station.payments.timed_gateway import TimedGateway
from station.settings import Settings

URLS = {
    "sqlite": "sqlite+aiosqlite:///:memory:",
    "postgresql": "postgresql+asyncpg://127.0.0.1:5432/test",
}


@pytest.fixture(params=sorted(URLS))
def parts(request: pytest.FixtureRequest) -> Parts:
    return build(Settings(database_url=URLS[request.param], secret_key="k" * 32))  # type: ignore[arg-type]


def graph(root: object) -> list[tuple[str, object]]:
    """(path, object) of every station object reachable from `root` by attributes."""
    seen: set[int] = set()
    found: list[tuple[str, object]] = []
    stack: list[tuple[str, object]] = [("parts", root)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen or not type(obj).__module__.startswith("station."):
            continue
        seen.add(id(obj))
        found.append((path, obj))
        names = getattr(obj, "__dict__", None) or {
            n: getattr(obj, n) for n in getattr(type(obj), "__slots__", ()) if hasattr(obj, n)
        }
        stack.extend((f"{path}.{name}", value) for name, value in dict(names).items())
    return found


def test_every_hook_is_the_part_the_root_built_for_it(parts: Parts) -> None:
    payments, central = parts.payments, parts.central_system

    assert parts.charging.listener is payments.billing
    assert central.events is parts.charging
    assert central.connections is parts.connections
    assert central.auth.metrics is parts.metrics
    assert central.handshakes.metrics is parts.metrics
    assert payments.settlement.receipt_for == payments.receipts.event
    assert payments.events.on_status is not None
    assert parts.kill_switch.sessions is payments.sessions
    assert parts.kill_switch.here is parts.connections
    assert parts.services.sessions is payments.sessions
    assert parts.services.units is parts.units and parts.units.db is parts.db  # type: ignore[attr-defined]
    assert parts.api.state.services is parts.services  # type: ignore[attr-defined]
    for service in (payments.settlement, payments.billing, payments.sessions):
        assert service._commands is parts.commands  # type: ignore[attr-defined]
    assert parts.missing_ends.commands is parts.commands


def test_the_gateway_the_services_hold_is_the_timed_stripe_gateway(parts: Parts) -> None:
    gateway = parts.payments.gateway

    assert isinstance(gateway, TimedGateway)
    assert isinstance(gateway.inner, StripeGateway)
    assert parts.payments.settlement._gateway is gateway  # type: ignore[attr-defined]
    assert parts.payments.authorisation._gateway is gateway  # type: ignore[attr-defined]


def test_several_nodes_get_the_cluster_wired_through_constructors(parts: Parts) -> None:
    assert parts.commands.is_connected_here("CP-nowhere") is False
    if parts.db.is_sqlite:
        assert parts.cluster is None
        assert parts.commands is parts.connections
        assert parts.central_system.ownership is None
        return
    node = parts.cluster

    assert node is not None
    assert parts.central_system.ownership is node
    assert isinstance(parts.commands, ClusterCommands)
    assert parts.commands.local is parts.connections and parts.commands.node is node
    assert node.executor is not None
    assert parts.payments.events is node.events
    assert node.events.on_status is not None


HOOKS = {"listener", "receipt_for", "on_status", "metrics", "_commands", "commands", "executor"}


def test_no_part_is_left_with_a_hook_unset_or_a_lambda_for_a_provider(parts: Parts) -> None:
    unset: list[str] = []
    lambdas: list[str] = []

    for path, obj in graph(parts):
        for name, value in dict(getattr(obj, "__dict__", {})).items():
            if name in HOOKS and value is None:
                unset.append(f"{path}.{name}")
            if isinstance(value, types.LambdaType) and value.__name__ == "<lambda>":
                lambdas.append(f"{path}.{name}")

    assert unset == []
    assert lambdas == []


def test_the_graph_walk_reaches_the_parts_it_checks(parts: Parts) -> None:
    reached = {type(obj).__name__ for _, obj in graph(parts)}

    assert {
        "SettlementService",
        "BillingListener",
        "SessionService",
        "ChargingService",
        "Authenticator",
        "HandshakeGuard",
        "MissingEnds",
        "Connections",
    } <= reached
