"""Property-based fuzzing of every HTTP endpoint from the OpenAPI document.

Schemathesis generates valid and invalid requests from ``app.openapi()`` and
sends them over real HTTP to a running station (on SQLite and PostgreSQL).
The property: never a 5xx, and every error is a problem+json document.
Operator endpoints get the admin token and agent endpoints are signed by a
registered agent, so the fuzzing reaches their validation. Examples per
operation are bounded to keep the suite fast.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from station.app import running_station
from station.bootstrap import build
from station.settings import Settings
from tests.conftest import _pg_create, _pg_drop, _pg_url
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

ADMIN_TOKEN = "schemathesis-admin-token-0123"
MAX_EXAMPLES = int(os.environ.get("CHARGEPAY_FUZZ_EXAMPLES", "15"))


def _settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        http_port=0,
        ocpp_port=0,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        secret_key="schemathesis-secret-key-0123456789",  # type: ignore[arg-type]
        log_level="CRITICAL",
    )


def _openapi() -> dict[str, object]:
    # Building the app opens nothing: the engine connects lazily.
    return build(_settings("sqlite+aiosqlite:///:memory:")).api.openapi()


schema = schemathesis.openapi.from_dict(_openapi())


class _StationThread:
    """A station serving from its own event loop in a thread, for synchronous clients."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.base_url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="station", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with running_station(_settings(self.database_url)) as station:
            self.base_url = f"http://127.0.0.1:{station.http_port}"
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> _StationThread:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"station did not start: {self._error!r}")
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@dataclass
class Live:
    base_url: str
    signer: AgentSigner


def _live(base_url: str) -> Live:
    """The running station with one registered agent to sign the fuzzed agent requests."""
    key, _ = generate_keypair()
    response = httpx.post(
        f"{base_url}/v1/admin/agents",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={
            "name": "fuzzer",
            "public_key": public_key_b64(key),
            "currency": "usd",
            "limit_per_session": "50.00",
            "limit_per_window": "200.00",
        },
        timeout=10,
    )
    response.raise_for_status()
    return Live(base_url, AgentSigner(response.json()["agent_id"], key))


class _RequestsSigner(requests.auth.AuthBase):
    """Signs a `requests` request (schemathesis' transport) like `AgentSigner` does."""

    def __init__(self, signer: AgentSigner) -> None:
        self.signer = signer

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
        mirror = httpx.Request(prepared.method or "GET", prepared.url or "", content=body or b"")
        self.signer.sign(mirror)
        for name in ("content-digest", "signature-input", "signature"):
            if name in mirror.headers:
                prepared.headers[name] = mirror.headers[name]
        return prepared


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live_station(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'station.db'}"
        with _StationThread(url) as running:
            yield _live(running.base_url)
        return
    name = f"chargepay_fuzz_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_pg_create(name))
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        with _StationThread(_pg_url(name)) as running:
            yield _live(running.base_url)
    finally:
        asyncio.run(_pg_drop(name))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_input_makes_a_5xx_and_every_error_is_a_problem(
    case: schemathesis.Case, live_station: Live
) -> None:
    headers, auth = {}, None
    if case.path.startswith("/v1/admin"):
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    else:  # agent endpoints: signed, so the fuzzing reaches their validation
        auth = _RequestsSigner(live_station.signer)

    response = case.call(base_url=live_station.base_url, headers=headers, auth=auth, timeout=30)

    assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
    if response.status_code >= 400:
        (content_type,) = response.headers.get("content-type", [""])
        assert content_type.startswith("application/problem+json"), response.text
        assert "code" in response.json()


def test_the_fuzzed_document_covers_the_operator_api() -> None:
    paths = set(_openapi()["paths"])  # type: ignore[arg-type]

    assert {"/v1/admin/agents", "/v1/admin/agents/{agent_id}/suspend", "/metrics"} <= paths
