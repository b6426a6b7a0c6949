"""`chargepay sessions …` and `chargepay tariffs …`: the operator API from the shell.

These talk to a running station over its admin API (PROTOCOL §5), so a stop
reaches the charge point and every change is audited like one made over
HTTP. The station is ``--station`` or ``CHARGEPAY_STATION_URL`` (default
``http://127.0.0.1:<CHARGEPAY_HTTP_PORT>``); the token is
``CHARGEPAY_ADMIN_TOKEN``. Output: a rich table, or ``--json`` for machines.

    chargepay sessions list [--status settled] [--charge-point CP-1] [--json]
    chargepay sessions show ses_… | stop ses_… | receipt ses_…
    chargepay sessions export [--format csv|cdr] [-o FILE]
    chargepay tariffs show [--json]
    chargepay tariffs set [--charge-point CP-1] --energy-price 0.39 [--session-fee 0.50]
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from station.cli_common import fail, load_settings, print_rows

sessions_app = typer.Typer(help="Charging sessions (over the admin API).", no_args_is_help=True)
tariffs_app = typer.Typer(help="Tariffs (over the admin API).", no_args_is_help=True)

StationOpt = Annotated[
    str | None, typer.Option("--station", help="The station's HTTP API (CHARGEPAY_STATION_URL).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON, for machines.")]
SESSION_COLUMNS = (
    "session_id",
    "status",
    "charge_point_id",
    "agent_id",
    "energy_kwh",
    "cost",
    "cap",
    "captured",
    "currency",
    "started_at",
    "stopped_at",
)


def admin_request(station: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One admin API call; a refusal or an unreachable station is one line and exit 2."""
    settings = load_settings()
    base = station or os.environ.get("CHARGEPAY_STATION_URL")
    base = (base or f"http://127.0.0.1:{settings.http_port}").rstrip("/")
    if settings.admin_token is None:
        fail("CHARGEPAY_ADMIN_TOKEN is not set; set it to the station's admin token")
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    try:
        response = httpx.request(method, base + path, headers=headers, timeout=30, **kwargs)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the station at {base} ({exc}); is chargepay serve running there?")
    if response.status_code >= 400:
        try:
            problem = response.json()
            detail = f"{problem.get('detail') or problem.get('title')} ({problem.get('code')})"
        except ValueError:
            detail = response.text.strip()[:200] or response.reason_phrase
        fail(f"{method} {path}: {response.status_code} {detail}")
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=str))


def _detail(doc: dict[str, Any], *, as_json: bool, title: str) -> None:
    if as_json:
        _echo_json(doc)
        return
    rows = [{"field": k, "value": _plain(v)} for k, v in doc.items()]
    print_rows(rows, ("field", "value"), as_json=False, title=title)


def _plain(value: Any) -> Any:
    if isinstance(value, dict | list) and value:
        return json.dumps(value, default=str)
    return value


# --- sessions -----------------------------------------------------------------------


@sessions_app.command("list")
def sessions_list(
    station: StationOpt = None,
    status: Annotated[str | None, typer.Option(help="e.g. charging, settled")] = None,
    charge_point: Annotated[str | None, typer.Option("--charge-point")] = None,
    agent: Annotated[str | None, typer.Option("--agent")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339; created at or after")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339; created before")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Sessions, newest first."""
    params = {
        "status": status,
        "charge_point_id": charge_point,
        "agent_id": agent,
        "since": since,
        "until": until,
        "limit": limit,
    }
    rows = admin_request(
        station, "GET", "/v1/admin/sessions", params={k: v for k, v in params.items() if v}
    )
    print_rows(rows, SESSION_COLUMNS, as_json=as_json, title="sessions")


@sessions_app.command("show")
def sessions_show(session_id: str, station: StationOpt = None, as_json: JsonOpt = False) -> None:
    """One session with its meter samples and anomalies."""
    doc = admin_request(station, "GET", f"/v1/admin/sessions/{session_id}")
    if not as_json:
        samples, anomalies = doc.pop("meter_samples", []), doc.pop("anomalies", [])
        doc["meter_samples"] = f"{len(samples)} (--json for all)"
        doc["anomalies"] = anomalies
    _detail(doc, as_json=as_json, title=session_id)


@sessions_app.command("stop")
def sessions_stop(session_id: str, station: StationOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a session: its charge point stops and it settles for what was delivered."""
    doc = admin_request(station, "POST", f"/v1/admin/sessions/{session_id}/stop")
    if as_json:
        _echo_json(doc)
    else:
        typer.echo(f"{session_id} {doc['status']}")


@sessions_app.command("receipt")
def sessions_receipt(session_id: str, station: StationOpt = None, as_json: JsonOpt = False) -> None:
    """The settled session's signed receipt."""
    doc = admin_request(station, "GET", f"/v1/admin/sessions/{session_id}/receipt")
    if as_json:
        _echo_json(doc)
        return
    lines = [
        {"item": line["kind"], "quantity": line["quantity"], "unit price": line["unit_price"],
         "amount": line["amount"]}
        for line in doc["cost_lines"]
    ]  # fmt: skip
    lines.append({"item": "total", "amount": doc["total"]})
    lines.append({"item": "captured", "amount": doc["captured"]})
    lines.append({"item": "released", "amount": doc["released"]})
    print_rows(
        lines,
        ("item", "quantity", "unit price", "amount"),
        as_json=False,
        title=f"receipt {session_id} ({doc['currency']}, {doc['energy_kwh']} kWh)",
    )


@sessions_app.command("export")
def sessions_export(
    station: StationOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="csv, or cdr (OCPI 2.2.1 CDRs)")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339; created at or after")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339; created before")] = None,
    country_code: Annotated[str, typer.Option(help="OCPI country code of the CPO")] = "US",
    party_id: Annotated[str, typer.Option(help="OCPI party id of the CPO")] = "CPY",
) -> None:
    """Settled sessions as CSV or as OCPI 2.2.1 CDRs (a JSON array), from their receipts."""
    from station.domain.cdr import CSV_COLUMNS, csv_row, to_ocpi_cdr

    if fmt not in ("csv", "cdr"):
        fail(f"--format {fmt!r} is not a format; use csv or cdr")
    out: Any = sys.stdout
    if output is not None:
        try:
            out = output.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            fail(
                f"cannot write {output} ({(exc.strerror or str(exc)).lower()}); "
                "give --output a path in an existing, writable folder"
            )
    params = {"status": "settled", "since": since, "until": until, "limit": 1000}
    listed = admin_request(
        station, "GET", "/v1/admin/sessions", params={k: v for k, v in params.items() if v}
    )
    receipts = [
        admin_request(station, "GET", f"/v1/admin/sessions/{s['session_id']}/receipt")
        for s in reversed(listed)
    ]
    try:
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for receipt in receipts:
                writer.writerow(csv_row(receipt))
            out.write(buffer.getvalue())
        else:
            now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            cdrs = [
                to_ocpi_cdr(r, country_code=country_code, party_id=party_id, last_updated=now)
                for r in receipts
            ]
            out.write(json.dumps(cdrs, indent=2) + "\n")
    finally:
        if output is not None:
            out.close()
    if output is not None:
        typer.echo(f"{len(receipts)} sessions written to {output}", err=True)


# --- tariffs ------------------------------------------------------------------------

TARIFF_COLUMNS = (
    "charge_point_id",
    "currency",
    "energy_price_per_kwh",
    "session_fee",
    "time_price_per_hour",
    "idle_fee_per_minute",
    "idle_grace_minutes",
    "max_power_kw",
)


@tariffs_app.command("show")
def tariffs_show(station: StationOpt = None, as_json: JsonOpt = False) -> None:
    """The default tariff (`*`) and each charge point's own."""
    listed = admin_request(station, "GET", "/v1/admin/tariffs")
    if as_json:
        _echo_json(listed)
        return
    rows = [{"charge_point_id": t["charge_point_id"], **t["tariff"]} for t in listed]
    print_rows(rows, TARIFF_COLUMNS, as_json=False, title="tariffs")


@tariffs_app.command("set")
def tariffs_set(
    energy_price: Annotated[str, typer.Option("--energy-price", help="Per kWh, e.g. 0.39")],
    charge_point: Annotated[
        str | None, typer.Option("--charge-point", help="Default: the default tariff")
    ] = None,
    currency: Annotated[str, typer.Option()] = "usd",
    session_fee: Annotated[str, typer.Option("--session-fee")] = "0",
    time_price: Annotated[str, typer.Option("--time-price", help="Per hour")] = "0",
    idle_fee: Annotated[str, typer.Option("--idle-fee", help="Per minute past the grace")] = "0",
    idle_grace: Annotated[int, typer.Option("--idle-grace", help="Minutes")] = 0,
    max_power: Annotated[str | None, typer.Option("--max-power", help="kW")] = None,
    station: StationOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the default tariff, or one charge point's own (audited)."""
    body = {
        "currency": currency,
        "energy_price_per_kwh": energy_price,
        "session_fee": session_fee,
        "time_price_per_hour": time_price,
        "idle_fee_per_minute": idle_fee,
        "idle_grace_minutes": idle_grace,
    }
    if max_power is not None:
        body["max_power_kw"] = max_power
    path = "/v1/admin/tariffs/" + (f"charge-points/{charge_point}" if charge_point else "default")
    stored = admin_request(station, "PUT", path, json=body)
    if as_json:
        _echo_json(stored)
    else:
        print_rows(
            [{"charge_point_id": charge_point or "*", **stored}], TARIFF_COLUMNS, as_json=False
        )
