"""The `chargepay` command.

    chargepay serve                 the station (OCPP + HTTP API) on the configured ports
    chargepay db upgrade            migrate the database to the newest schema
    chargepay chargepoints add/list register charge points
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
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import pydantic
import typer
from rich.console import Console

from station import __version__
from station.logs import configure as configure_logging
from station.settings import Settings
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

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env; a bad value exits naming the field."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        fail(f"bad setting CHARGEPAY_{field.upper()}: {first['msg']}")


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
) -> None:
    """Run the station: the OCPP central system and the HTTP API."""
    from station.app import Station

    settings = load_settings(http_port=http_port, ocpp_port=ocpp_port)
    configure_logging(settings.log_level, settings.log_format)
    station = Station(settings)

    async def main() -> None:
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

    run_async(main)


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
    from station.store.db import upgrade

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    upgrade(settings.database_url)
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
    from station.errors import ChargepayError
    from station.store.charging import register_charge_point

    async def work(db: Database) -> None:
        await register_charge_point(db, charge_point_id, password, replace=replace)

    try:
        with_database(work)
    except ChargepayError as exc:
        fail(exc.detail)
    err.print(f"[green]registered[/] {charge_point_id}")


@chargepoints_app.command("list")
def chargepoints_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The registered charge points, their connection and OCPP version."""
    from rich.table import Table

    from station.store.charging import list_charge_points

    points = with_database(list_charge_points)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for p in points], default=str))
        return
    table = Table("charge point", "connected", "OCPP", "vendor", "model", "last seen")
    for p in points:
        table.add_row(
            p.charge_point_id,
            "yes" if p.connected else "no",
            p.ocpp_version or "-",
            p.vendor or "-",
            p.model or "-",
            f"{p.last_seen:%Y-%m-%d %H:%M:%S}" if p.last_seen else "-",
        )
    Console().print(table)


@app.command()
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    time_scale: float = typer.Option(600, help="How much faster simulated time runs."),
) -> None:
    """The whole system on the embedded defaults: station, Stripe sandbox, charge points, cars."""
    from rich.live import Live
    from rich.markup import escape

    from simulators.demo import Report, run_demo
    from simulators.stripe_sandbox import MISSING, sandbox_installed

    if not sandbox_installed():
        fail(escape(MISSING))
    configure_logging("ERROR", "text")
    out = Console(width=max(Console().width, 110))
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
    from rich.table import Table

    table = Table(title="chargepay demo" + ("" if final else " (live)"), min_width=100)
    for column in ("driver", "station", "OCPP", "per kWh", "kWh", "cap", "captured"):
        table.add_column(
            column, justify="right" if column in {"kWh", "cap", "captured"} else "left"
        )
    table.add_column("released", justify="right")
    table.add_column("status" if final else "step")
    for row in report.rows:
        status = row.status if final else row.step
        if final:
            mark = "[green]✓[/]" if row.ended_as_expected else "[red]✗[/]"
            status = f"{mark} {row.status}"
        table.add_row(
            row.driver.name,
            row.driver.charge_point_id,
            row.version.removeprefix("ocpp"),
            row.price_per_kwh,
            f"{row.energy_kwh:.3f}",
            row.cap,
            row.captured,
            row.released,
            status,
        )
    return table


def with_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run one piece of work on the configured database, migrated first."""
    settings = load_settings()
    configure_logging("WARNING", settings.log_format)

    async def main() -> T:
        db = Database(settings.database_url)
        try:
            await db.upgrade()
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def _mount_subcommands() -> None:
    from station.cli_trust import agents_app, audit_app
    from vehicle.cli import agent_app

    app.add_typer(agents_app, name="agents")
    app.add_typer(audit_app, name="audit")
    app.add_typer(agent_app, name="agent")


_mount_subcommands()


def main() -> None:
    app(prog_name="chargepay")


if __name__ == "__main__":
    main()
