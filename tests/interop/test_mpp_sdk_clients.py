"""The official MPP SDKs' own clients pay a live station against localstripe (through the
SPT sandbox): pympp on `charge` (its stock stripe method), mppx (Node) on `charge` with
its stock method and on `authorize` through a small client-side method registered in it.
Both SDKs parse the station's receipts.

mppx needs Node.js and ``npm ci`` in tests/interop (`.ci/run` does it). Outside CI the
mppx tests skip without them; under CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import mpp
import pytest
from mpp.client.transport import PaymentTransport
from mpp.methods.stripe import client as stripe_client
from mpp.methods.stripe.client import OnChallengeParameters

from simulators.battery import Battery
from simulators.spt_sandbox import SptSandbox
from simulators.stripe_sandbox import SANDBOX_API_KEY
from tests.interop.signing_forwarder import signing_forwarder
from tests.vehicle import test_agent_e2e as e2e
from tests.vehicle.test_pympp_client_interop import _accept, _negotiate, sandbox, station
from vehicle.signing import AgentSigner, SigningTransport
from vehicle.spt import StripeTokenIssuer, TokenRequest

__all__ = ["sandbox", "station"]
world = e2e.world


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The MPP wire is what is tested here, not the database: SQLite only (the
    payment paths run on both databases in tests/e2e and tests/payments)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'station.db'}"


HERE = Path(__file__).parent
NODE = shutil.which("node")
MPPX_MISSING = (
    "Node.js is not installed"
    if NODE is None
    else "mppx is not installed: run `npm ci` in tests/interop"
    if not (HERE / "node_modules" / "mppx").is_dir()
    else None
)


def _needs_mppx() -> None:
    if MPPX_MISSING is not None:
        if os.environ.get("CI"):
            pytest.fail(f"mppx cannot run under CI: {MPPX_MISSING}", pytrace=False)
        pytest.skip(MPPX_MISSING)


async def _settle(world: e2e.World, session_id: str) -> tuple[dict[str, Any], str]:
    """Stop the session, wait for its settlement; the receipt body and header."""
    async with httpx.AsyncClient(
        base_url=world.base_url, auth=AgentSigner(world.agent_id, world.key), timeout=15
    ) as signed:
        await signed.post(f"/v1/sessions/{session_id}/stop")
        async with asyncio.timeout(20):
            while True:
                status = (await signed.get(f"/v1/sessions/{session_id}")).json()["status"]
                if status in ("settled", "cancelled", "failed"):
                    break
                await asyncio.sleep(0.1)
        receipt = await signed.get(f"/v1/sessions/{session_id}/receipt")
    assert receipt.status_code == 200, receipt.text
    return receipt.json(), receipt.headers["payment-receipt"]


async def test_pympps_stock_stripe_client_pays_the_station_on_charge(
    world: e2e.World, sandbox: SptSandbox
) -> None:
    issuer = StripeTokenIssuer(SANDBOX_API_KEY, "pm_card_visa", api_base=sandbox.url)

    async def create_token(params: OnChallengeParameters) -> str:
        expires = datetime.fromtimestamp(params.expires_at, tz=UTC)
        return await issuer.issue(
            TokenRequest(int(params.amount), params.currency, expires, params.network_id)
        )

    transport = PaymentTransport(
        methods=[stripe_client.charge(create_token=create_token, payment_method="pm_card_visa")],
        inner=SigningTransport(AgentSigner(world.agent_id, world.key)),
    )
    neg = await _negotiate(world)
    path, body = _accept(neg)
    async with e2e.charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5")))
        await asyncio.wait_for(sim.booted.wait(), 10)
        async with httpx.AsyncClient(base_url=world.base_url, transport=transport) as client:
            response = await client.post(path, json=body)
        assert response.status_code == 201, response.text
        session = response.json()
        await asyncio.sleep(0.3)  # let some energy flow
        receipt, header = await _settle(world, session["session_id"])

    paid = mpp.Receipt.from_payment_receipt(response.headers["payment-receipt"])
    settled = mpp.Receipt.from_payment_receipt(header)
    assert session["payment"]["intent"] == "charge" and session["payment"]["status"] == "succeeded"
    assert (paid.status, paid.method, paid.reference) == (
        "success", "stripe", session["payment"]["reference"],
    )  # fmt: skip
    assert paid.external_id == neg["offer"]["offer_id"]
    assert settled.extensions is not None and settled.extensions["intent"] == "charge"
    charged = int(Decimal(receipt["charged"]) * 100)
    assert int(settled.extensions["refundedAmount"]) == charged - int(
        Decimal(receipt["captured"]) * 100
    )
    ((_, token),) = sandbox.tokens.items()
    assert token.used_by is not None


async def _mppx(payload: dict[str, Any]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        str(NODE), str(HERE / "mppx_pay.mjs"), json.dumps(payload),
        cwd=HERE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()[-2000:]
    doc: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return doc


@pytest.mark.parametrize("intent", ["charge", "authorize"])
async def test_mppxs_client_negotiates_and_pays_the_station(
    world: e2e.World, sandbox: SptSandbox, intent: str
) -> None:
    _needs_mppx()
    neg = await _negotiate(world)
    path, body = _accept(neg)
    signer = AgentSigner(world.agent_id, world.key)
    async with e2e.charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5")))
        await asyncio.wait_for(sim.booted.wait(), 10)
        async with signing_forwarder(world.base_url, signer) as forwarder:
            paid = await _mppx(
                {
                    "url": forwarder + path, "body": body, "intent": intent,
                    "sandbox": sandbox.url, "apiKey": SANDBOX_API_KEY,
                    "paymentMethod": "pm_card_visa",
                }
            )  # fmt: skip
        assert paid["status"] == 201, paid["body"]
        session = json.loads(paid["body"])
        await asyncio.sleep(0.3)
        receipt, header = await _settle(world, session["session_id"])
    parsed = await _mppx({"parse": [header]})

    assert paid["offered"] == ["stripe/authorize", "stripe/charge"]
    assert session["payment"]["intent"] == intent
    ((settled,),) = [parsed["receipts"]]
    assert settled["reference"] == session["payment"]["reference"]
    assert settled["externalId"] == neg["offer"]["offer_id"]
    assert settled["status"] == "success" and settled["method"] == "stripe"
    if intent == "charge":
        assert paid["receipt"]["reference"] == session["payment"]["reference"]
        assert settled["refundedAmount"] == str(
            int(Decimal(receipt["charged"]) * 100) - int(Decimal(receipt["captured"]) * 100)
        )
    else:
        assert paid["receipt"] is None  # the draft: no receipt until the capture
        assert settled["capturedAmount"] == str(int(Decimal(receipt["captured"]) * 100))
    ((_, token),) = sandbox.tokens.items()
    assert token.used_by is not None
