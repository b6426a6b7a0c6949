"""The `chargepay` command.

    chargepay serve                 the station (OCPP + HTTP API) on the configured ports
    chargepay db upgrade            migrate the database to the newest schema
    chargepay chargepoints add/list/remove  the charge point registry
    chargepay agents …              the agent registry (suspend, resume, …)
    chargepay audit verify|export   the hash-chained audit log
    chargepay agent …               the vehicle agent (charge, keygen)
    chargepay simulate              a fleet of simulated charge points against a station
    chargepay demo                  everything above on the embedded defaults

Configuration comes from ``CHARGEPAY_*`` variables or a ``.env`` file; a bad
setting stops the command with one line naming the field, never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console

from station import __version__
from station.cli_common import EXIT_USAGE, fail, load_settings, print_rows, with_database
from station.logs import configure as configure_logging
from station.startup import StartupError, explain

if TYPE_CHECKING:
    from station.store.db import Database

app = typer.Typer(
    name="chargepay",
    help="Payment system for EV charging: OCPP central system, machine payments, vehicle agent.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
chargepoints_app = typer.Typer(help="The charge point registry.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(chargepoints_app, name="chargepoints")
err = Console(stderr=True)


def run_async(main: Callable[[], Any]) -> Any:
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    http_port: int | None = typer.Option(None, help="Overrides CHARGEPAY_HTTP_PORT."),
    ocpp_port: int | None = typer.Option(None, help="Overrides CHARGEPAY_OCPP_PORT."),
    sandbox: bool = typer.Option(
        False,
        "--sandbox",
        help="Start the Stripe sandbox (localstripe) and generate the secrets not set.",
    ),
) -> None:
    """Run the station: the OCPP central system and the HTTP API.

    It refuses to start without an admin token, a secret key and a Stripe key
    that look real (long, random, no placeholder); `--sandbox` runs it
    against a local Stripe sandbox with generated secrets instead.
    """
    import contextlib

    from station.app import Station
    from station.bootstrap import build
    from station.startup import check_ports, check_secrets, check_tls, open_database

    settings = load_settings(http_port=http_port, ocpp_port=ocpp_port)
    with contextlib.ExitStack() as stack:
        if sandbox:
            settings = _sandboxed(settings, stack)
        try:
            check_secrets(settings)
            check_tls(settings)
            check_ports(settings)
            stack.enter_context(_single_node_lock(settings.database_url))
        except StartupError as exc:
            fail(str(exc))
        configure_logging(settings.log_level, settings.log_format)
        station = Station(build(settings))

        async def main() -> None:
            await (await open_database(settings.database_url)).dispose()
            # The station owns the signals: SIGTERM/SIGINT shut it down in order and
            # `serve` exits 0 (a second signal changes nothing; the stages have deadlines).
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, station.stop)
            freeze = asyncio.create_task(freeze_after_start(station))
            try:
                await station.run()
            finally:
                freeze.cancel()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

        try:
            run_async(main)
        except StartupError as exc:
            fail(str(exc))


def _single_node_lock(database_url: str) -> Any:
    """SQLite is one node's (station.cluster.sqlite_lock); closed when `serve` ends."""
    import contextlib

    from station.cluster import sqlite_lock

    lock = sqlite_lock.hold(database_url)
    return lock if lock is not None else contextlib.nullcontext()


def _sandboxed(settings: Any, stack: Any) -> Any:
    """The settings with a running localstripe and generated secrets for those not set."""
    import secrets

    from simulators.stripe_sandbox import SANDBOX_API_KEY, stripe_sandbox

    url = stack.enter_context(stripe_sandbox())
    update: dict[str, Any] = {"stripe_api_key": SecretStr(SANDBOX_API_KEY), "stripe_api_base": url}
    generated = []
    for name in ("admin_token", "secret_key"):
        if getattr(settings, name) is None:
            update[name] = SecretStr(secrets.token_urlsafe(32))
            generated.append(name)
    token = (update.get("admin_token") or settings.admin_token).get_secret_value()
    said = f"generated CHARGEPAY_ADMIN_TOKEN={token}" if "admin_token" in generated else ""
    if "secret_key" in generated:
        said += ("; " if said else "") + "generated a secret key"
    err.print(
        f"sandbox: Stripe sandbox (localstripe) at {url}, key {SANDBOX_API_KEY}"
        + (f"; {said}" if said else "")
        + " (sandbox only: nothing is charged, secrets last until this process stops)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return settings.model_copy(update=update)


async def freeze_after_start(station: Any) -> None:
    """Once the station is up, put what start-up left alive out of the collector's way.

    Start-up leaves some 200,000 long-lived objects (SQLAlchemy, pydantic, the
    OCPP schemas); under load every full collection walked all of them again,
    about 90 ms each. Frozen, they are never scanned. Only `serve` does this:
    tests run many stations in one process and must not pin their garbage.
    """
    await station.ready.wait()
    gc.collect()
    gc.freeze()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from station.startup import open_database

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)

    async def main() -> None:
        await (await open_database(settings.database_url)).dispose()

    try:
        asyncio.run(main())
    except StartupError as exc:
        fail(str(exc))
    err.print("[green]database at the newest schema[/]")


@chargepoints_app.command("add")
def chargepoints_add(
    charge_point_id: str = typer.Argument(..., help="The id it connects under: /ocpp/{id}."),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, help="16–40 characters (HTTP Basic, profiles 1–2)."
    ),
    replace: bool = typer.Option(False, help="Set a new password for a registered one."),
) -> None:
    """Register a charge point so that it may connect."""
    from station.store.charging import register_charge_point

    async def work(db: Database) -> None:
        await register_charge_point(db, charge_point_id, password, replace=replace)

    with_database(work)
    err.print(f"[green]registered[/] {charge_point_id}")


CHARGE_POINT_COLUMNS = (
    "charge_point_id",
    "connected",
    "ocpp_version",
    "vendor",
    "model",
    "firmware_version",
    "last_seen",
)


@chargepoints_app.command("list")
def chargepoints_list(
    as_json: bool = typer.Option(False, "--json", help="A JSON array, for machines."),
    show_all: bool = typer.Option(False, "--all", help="The removed ones too."),
) -> None:
    """The registered charge points, their connection and OCPP version."""
    from station.store.charging import list_charge_points

    async def work(db: Database) -> list[dict[str, Any]]:
        points = await list_charge_points(db, removed=show_all)
        return [dataclasses.asdict(p) for p in points]

    columns = CHARGE_POINT_COLUMNS + (("removed_at",) if show_all else ())
    print_rows(with_database(work), columns, as_json=as_json, title="charge points")


@chargepoints_app.command("remove")
def chargepoints_remove(
    charge_point_id: str = typer.Argument(..., help="The charge point's id."),
    reason: str = typer.Option(..., help="Why (kept in the audit log)."),
) -> None:
    """Remove a charge point (it can no longer connect; its history stays; audited).

    Refused while one of its sessions is live. ``chargepoints add`` brings it back.
    """
    from station.store.charging import remove_charge_point

    async def work(db: Database) -> None:
        await remove_charge_point(db, charge_point_id, reason=reason, actor="cli")

    with_database(work)
    err.print(f"[yellow]removed[/] {charge_point_id}", highlight=False)


@chargepoints_app.command("wait")
def chargepoints_wait(
    charge_point_ids: Annotated[list[str], typer.Argument(help="One or more ids.")],
    timeout: Annotated[float, typer.Option(help="Seconds before giving up (exit 1).")] = 60,
) -> None:
    """Wait until the charge points are connected to a station (scripts, the README)."""
    import time

    from station.store.charging import list_charge_points

    deadline = time.monotonic() + timeout
    while True:
        points = {p.charge_point_id: p for p in with_database(list_charge_points)}
        unknown = [cp for cp in charge_point_ids if cp not in points]
        if unknown:
            fail(f"{unknown[0]} is not registered; add it with chargepay chargepoints add")
        waiting = [cp for cp in charge_point_ids if not points[cp].connected]
        if not waiting:
            err.print(f"connected: {', '.join(charge_point_ids)}", highlight=False)
            return
        if time.monotonic() > deadline:
            fail(f"{', '.join(waiting)} not connected after {timeout:g} s", code=1)
        time.sleep(0.5)


@app.command()
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    time_scale: float = typer.Option(600, help="How much faster simulated time runs."),
) -> None:
    """The whole system on the embedded defaults: station, Stripe sandbox, charge points, cars."""
    from rich.live import Live

    from simulators.demo import Report, run_demo
    from simulators.stripe_sandbox import MISSING, sandbox_installed

    if not sandbox_installed():
        fail(MISSING)
    configure_logging("ERROR", "text")
    out = Console(width=max(Console().width, 150))
    if as_json:
        report = run_async(lambda: run_demo(lambda _report: None, time_scale=time_scale))
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        with Live(console=out, refresh_per_second=8, transient=True) as live:

            def refresh(report: Report) -> None:
                live.update(_demo_table(report, final=False))

            report = run_async(lambda: run_demo(refresh, time_scale=time_scale))
        out.print(_demo_table(report, final=True))
        for row in report.rows:
            if row.detail:
                out.print(f"  {row.driver.name}: {row.detail}", highlight=False)
        totals = report.totals()
        out.print(
            f"delivered {totals['energy_kwh']} kWh, captured {totals['captured']} "
            f"{totals['currency']}, released {totals['released']} {totals['currency']}"
        )
        out.print("[green]every session ended as expected[/]" if report.ok else "[red]FAILED[/]")
    if not report.ok:
        raise typer.Exit(1)


def _demo_table(report: Any, *, final: bool) -> Any:
    """Live: who is bargaining, at what price and cap, charging how much. Final: the bill,
    kWh × price = energy, + fees = captured, next to the cap and what was released."""
    from rich.table import Table

    table = Table(title="chargepay demo" + ("" if final else " (live)"), min_width=100)
    columns: tuple[str, ...]
    if final:
        columns = ("driver", "station", "OCPP", "rounds", "kWh", "× per kWh", "= energy",
                   "+ fees", "− over cap", "= captured", "cap", "released", "ended")  # fmt: skip
    else:
        columns = ("driver", "station", "OCPP", "rounds", "per kWh", "cap", "kWh", "now")
    left = {"driver", "station", "OCPP", "now", "ended"}
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    for row in report.rows:
        head = (row.driver.name, row.driver.charge_point_id, row.version.removeprefix("ocpp"))
        rounds = str(row.rounds or "-")
        if final:
            mark = "[green]✓[/]" if row.ended_as_expected else "[red]✗[/]"
            ended = "walked away (no deal)" if row.status == "no_deal" else row.status
            table.add_row(
                *head, rounds, f"{row.energy_kwh:.3f}", row.price_per_kwh, row.energy_cost,
                row.fees, row.above_cap.lstrip("-") if row.above_cap not in ("-", "0", "0.00")
                else "-", row.captured, row.cap, row.released, f"{mark} {ended}",
            )  # fmt: skip
        else:
            table.add_row(
                *head, rounds, row.price_per_kwh, row.cap, f"{row.energy_kwh:.3f}", row.step
            )
    return table


def _mount_subcommands() -> None:
    from station.cli_operator import sessions_app, tariffs_app
    from station.cli_simulate import simulate
    from station.cli_trust import agents_app, audit_app
    from vehicle.cli import agent_app
    from vehicle.cli import keygen as agent_keygen

    app.add_typer(agents_app, name="agents")
    app.add_typer(audit_app, name="audit")
    app.add_typer(sessions_app, name="sessions")
    app.add_typer(tariffs_app, name="tariffs")
    app.command("simulate")(simulate)
    app.add_typer(agent_app, name="agent")
    # One keygen for everyone: the agent's (`chargepay agent keygen` is the same command).
    app.command("keygen")(agent_keygen)


_mount_subcommands()


def main() -> None:
    try:
        app(prog_name="chargepay")
    except (StartupError, OSError, BaseExceptionGroup) as exc:
        # What the checks up front could not see coming (a file that vanished, a
        # port taken between the check and the bind): one line if it is the
        # operator's to fix, the traceback if it is a bug.
        line = explain(exc)
        if line is None:
            raise
        Console(stderr=True, soft_wrap=True).print(f"error: {line}", highlight=False, markup=False)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
