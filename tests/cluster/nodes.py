"""Station nodes as real `python -m station serve` processes on one PostgreSQL database,
a signed agent on any of them, and a TCP load balancer for the charge points' sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from simulators.ports import free_port
from simulators.stripe_sandbox import SANDBOX_API_KEY
from tests.e2e.conftest import ADMIN_TOKEN, SECRET
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

LEASE_S = 4


@dataclass
class Node:
    name: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.env['CHARGEPAY_HTTP_PORT']}"

    @property
    def ocpp_port(self) -> int:
        return int(self.env["CHARGEPAY_OCPP_PORT"])

    @property
    def ocpp(self) -> str:
        return f"ws://127.0.0.1:{self.ocpp_port}/ocpp"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "station", "serve"],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=out,
            )

    async def ready(self) -> None:
        async with asyncio.timeout(40), httpx.AsyncClient() as client:
            while True:
                assert self.process is not None and self.process.poll() is None, self.tail()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.http}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextlib.asynccontextmanager
async def nodes(
    database_url: str, stripe_url: str, tmp_path: Path, count: int, **extra: str
) -> AsyncIterator[list[Node]]:
    """``count`` nodes (node-a, node-b, …) on one database, all ready."""
    started: list[Node] = []
    try:
        for index in range(count):
            name = f"node-{'abc'[index]}"
            env = {
                "CHARGEPAY_DATABASE_URL": database_url,
                "CHARGEPAY_HTTP_PORT": str(free_port()),
                "CHARGEPAY_OCPP_PORT": str(free_port()),
                "CHARGEPAY_ADMIN_TOKEN": ADMIN_TOKEN,
                "CHARGEPAY_SECRET_KEY": SECRET,
                "CHARGEPAY_STRIPE_API_KEY": SANDBOX_API_KEY,
                "CHARGEPAY_STRIPE_API_BASE": stripe_url,
                "CHARGEPAY_NODE_ID": name,
                "CHARGEPAY_CLUSTER_LEASE_S": str(LEASE_S),
                "CHARGEPAY_LOG_LEVEL": "INFO",
                "CHARGEPAY_LOG_FORMAT": "text",
                **extra,
            }
            node = Node(name, env, tmp_path / f"{name}.log")
            node.start()
            started.append(node)
        for node in started:
            await node.ready()
        yield started
    finally:
        for node in started:
            node.stop()


@dataclass
class Clients:
    """The operator and one signed agent, each with a client per node."""

    admin: list[httpx.AsyncClient]
    agent: list[httpx.AsyncClient]
    agent_id: str
    _all: list[httpx.AsyncClient] = field(default_factory=list)

    async def aclose(self) -> None:
        for client in [*self.admin, *self.agent]:
            await client.aclose()


async def clients(cluster: Sequence[Node]) -> Clients:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    admin = [httpx.AsyncClient(base_url=n.http, headers=headers, timeout=20) for n in cluster]
    key, _ = generate_keypair()
    response = await admin[0].post(
        "/v1/admin/agents",
        json={
            "name": "cluster-car",
            "public_key": public_key_b64(key),
            "currency": "usd",
            "limit_per_session": "100.00",
            "limit_per_window": "1000.00",
            "window_hours": 24,
        },
    )
    assert response.status_code == 201, response.text
    agent_id = response.json()["agent_id"]
    agent = [
        httpx.AsyncClient(base_url=n.http, auth=AgentSigner(agent_id, key), timeout=20)
        for n in cluster
    ]
    return Clients(admin, agent, agent_id)


async def settled(agent: httpx.AsyncClient, session_id: str, timeout_s: float = 40) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            doc = (await agent.get(f"/v1/sessions/{session_id}")).json()
            if doc["status"] in ("settled", "cancelled", "failed"):
                return doc
            await asyncio.sleep(0.1)


class Balancer:
    """A TCP load balancer for the charge points: each new connection goes to the first
    backend that accepts it (so a node's death sends its charge points to the next)."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Balancer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()

    @property
    def ocpp(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for port in self.ports:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            for source, sink in ((reader, up_writer), (up_reader, writer)):
                task = asyncio.create_task(_pipe(source, sink))
                self._pipes.add(task)
                task.add_done_callback(self._pipes.discard)
            return
        writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            sink.close()
