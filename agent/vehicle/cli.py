"""`chargepay agent …`: the vehicle agent on the command line.

    chargepay agent keygen --out agent.pem      # prints the public key to register
    chargepay agent charge --station http://127.0.0.1:8080 --charge-point CP-1 \\
        --energy 30 --budget 20 --agent-id agt_… --key agent.pem \\
        --payment-method pm_card_visa

Exit status: 0 settled with a receipt that adds up; 1 no deal or an error
on the way; 2 a bad argument or file (nothing was sent); 3 a disputed
receipt. Output is drawn with rich; `--json` prints one JSON document
instead. Errors are one line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import platformdirs
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from vehicle.agent import AgentEvent, ChargeOutcome, VehicleAgent, parse_departure
from vehicle.client import StationTarget
from vehicle.errors import AgentError
from vehicle.goal import Goal
from vehicle.logs import configure
from vehicle.money import Money, MoneyError, parse_decimal
from vehicle.signing import generate_keypair, load_private_key, public_key_b64, save_private_key
from vehicle.wallet import Instrument, JsonFileLedger, SpendLimits, Wallet, utc_now

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DISPUTE = 3
# The platform's state directory (~/.local/state/chargepay-agent on Linux).
DEFAULT_SPEND_RECORD = platformdirs.user_state_path("chargepay-agent") / "spend.json"
DEFAULT_KEY = Path("agent.pem")
Opt = typer.Option

agent_app = typer.Typer(
    help="The vehicle agent: negotiate, pay over MPP, charge and check the receipt.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@agent_app.command()
def keygen(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the key.")] = Path(
        "agent.pem"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing key file.")] = False,
) -> None:
    """Make an Ed25519 key pair; print the public key to register with the operator."""
    if out_file.exists() and not force:
        raise _fail(f"{out_file} exists (use --force to replace it)")
    private_key, _ = generate_keypair()
    save_private_key(private_key, out_file)
    err.print(f"private key written to {out_file} (mode 0600); register this public key:")
    out.print(public_key_b64(private_key), highlight=False, soft_wrap=True)


def _station_url(text: str) -> str:
    """A station's base URL as given, or exit 2 naming what is wrong with it."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        raise _fail(f"--station {text!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(
            f"--station {text!r} is not a station URL; give its base URL, "
            "e.g. --station http://127.0.0.1:8080"
        )
    return text


def _targets(
    stations: list[str], charge_points: list[str], evse: int | None, agent_ids: list[str]
) -> list[StationTarget]:
    """Pair stations with charge points (one with many, or one to one), and each
    station with the agent's id there (one id for all, or one per --station)."""
    if len(stations) == 1:
        pairs = [(stations[0], cp) for cp in charge_points]
    elif len(charge_points) == 1:
        pairs = [(url, charge_points[0]) for url in stations]
    elif len(stations) == len(charge_points):
        pairs = list(zip(stations, charge_points, strict=True))
    else:
        raise _fail("give one --station, one --charge-point, or as many of each")
    if len(agent_ids) == 1:
        ids = dict.fromkeys(stations, agent_ids[0])
    elif len(agent_ids) == len(stations):
        ids = dict(zip(stations, agent_ids, strict=True))
    else:
        raise _fail("give one --agent-id, or one per --station")
    return [StationTarget(url, cp, evse, agent_id=ids[url]) for url, cp in pairs]


def _amount(text: str, name: str) -> Decimal:
    try:
        value = parse_decimal(text)
    except MoneyError as exc:
        raise _fail(f"--{name}: {exc}") from exc
    if value <= 0:
        raise _fail(f"--{name} must be positive")
    return value


def _major(minor: Any, currency: Any) -> str:
    try:
        return f"{Money.from_minor_units(int(minor), str(currency)).to_wire()} {currency}"
    except (ValueError, TypeError, MoneyError):
        return f"{minor!r} {currency!r} (unreadable)"


class _Screen:
    """Draws the agent's events: offers and rounds, then a charging progress bar."""

    def __init__(self, goal: Goal, quiet: bool) -> None:
        self.goal = goal
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __call__(self, event: AgentEvent) -> None:
        if self.quiet:
            return
        d, station = event.data, event.station
        line = {
            "offer": lambda: (
                f"[cyan]{station}[/] round {d['round']}/{d['max_rounds']} ({d['status']}): "
                f"{d['price_per_kwh']}/kWh, estimate {d['estimated_cost']} "
                f"[dim](my limit {d['reservation']}/kWh)[/]"
            ),
            "counter": lambda: (
                f"  → counter {d['price_per_kwh']}/kWh"
                + (f", max {d['max_power_kw']} kW" if d.get("max_power_kw") else "")
                + (f", may stay until {d['departure_at']}" if d.get("departure_at") else "")
            ),
            "walk_away": lambda: f"  [yellow]✗ {station}: walked away[/] — {d['reason']}",
            "deal": lambda: (
                f"  [green]✓ deal[/] {d['price_per_kwh']}/kWh, estimate {d['estimated_cost']}, "
                f"cap {d['cap']}"
            ),
            "chosen": lambda: f"[bold]charging at {station}[/], session {d['session_id']}",
            "challenge": lambda: f"  402: a hold of {_major(d['amount'], d['currency'])} asked",
            "paid": lambda: f"  [green]hold placed[/] {d['cap']} — payment {d['reference']}",
            "stop_requested": lambda: f"  goal reached ({d['energy_kwh']} kWh): asked to stop",
        }.get(event.kind)
        if line is not None:
            self._print(line())
        if event.kind == "chosen":
            self._start_bar()
        elif event.kind in ("meter", "poll"):
            self._advance(d)
        elif event.kind == "status" and d.get("status"):
            self._print(f"  status: {d['status']}")
        elif event.kind == "settled":
            self._stop_bar()

    def _print(self, text: str) -> None:
        console = self.progress.console if self.progress is not None else out
        console.print(text, highlight=False, soft_wrap=True)

    def _start_bar(self) -> None:
        self.progress = Progress(
            TextColumn("  energy"), BarColumn(), TextColumn("{task.fields[label]}"), console=out
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "charge", total=float(self.goal.energy_kwh), label="waiting for the car"
        )

    def _advance(self, data: dict[str, Any]) -> None:
        if self.progress is None or self.task is None:
            return
        energy = data.get("energy_kwh") or data.get("energy")
        if isinstance(energy, str):
            cost = data.get("cost", "")
            label = f"{energy} kWh" + (f", {cost} so far" if cost else "")
            # the bar is a picture, not money: a float is fine here
            self.progress.update(self.task, completed=float(energy), label=label)

    def _stop_bar(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def close(self) -> None:
        self._stop_bar()


def _summary(outcome: ChargeOutcome) -> dict[str, Any]:
    deal, session, verdict = outcome.deal, outcome.session, outcome.verdict
    body = verdict.body if verdict is not None else None
    return {
        "ok": outcome.ok,
        "station": deal.target.label,
        "negotiation_id": deal.negotiation_id,
        "offer_id": deal.offer_id,
        "rounds": deal.rounds,
        "price_per_kwh": str(deal.accept.offer.tariff.energy_price_per_kwh),
        "estimated_cost": deal.accept.estimated_cost.to_wire(),
        "cap": deal.accept.cap.to_wire(),
        "currency": deal.accept.cap.currency,
        "session_id": session.session_id,
        "status": session.status,
        "payment_reference": session.payment_reference,
        "energy_kwh": str(body.energy_kwh) if body else str(session.energy_kwh),
        "total": str(body.total) if body else None,
        "captured": str(body.captured) if body else None,
        "released": str(body.released) if body else None,
        "verdict": verdict.kind if verdict is not None else None,
        "reasons": list(verdict.reasons) if verdict is not None else [],
        "notes": list(verdict.notes) if verdict is not None else [],
        "passed_over": list(outcome.passed_over),
        "alternatives": [
            {
                "station": d.target.label,
                "price_per_kwh": str(d.accept.offer.tariff.energy_price_per_kwh),
                "estimated_cost": d.accept.estimated_cost.to_wire(),
            }
            for d in outcome.alternatives
        ],
    }


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title="charge", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key in ("station", "session_id", "status", "price_per_kwh", "energy_kwh", "total",
                "captured", "released", "cap", "payment_reference", "verdict"):  # fmt: skip
        if summary.get(key) is not None:
            table.add_row(key.replace("_", " "), str(summary[key]))
    for reason in summary["reasons"]:
        table.add_row("[red]dispute[/]", reason)
    for note in summary["notes"]:
        table.add_row("note", note)
    return table


@agent_app.command()
def charge(
    station: Annotated[list[str], Opt("--station", help="Station base URL (repeatable).")],
    charge_point: Annotated[list[str], Opt("--charge-point", help="Charge point id (repeatable).")],
    energy: Annotated[str, Opt("--energy", help="kWh wanted.")],
    budget: Annotated[str, Opt("--budget", help="Most to pay, in major units.")],
    agent_id: Annotated[
        list[str],
        Opt("--agent-id", envvar="CHARGEPAY_AGENT_ID", help="Repeat: one per --station."),
    ],
    evse: Annotated[int | None, Opt("--evse", help="EVSE id at the charge point.")] = None,
    departure: Annotated[str | None, Opt("--departure", help="ISO time the car leaves.")] = None,
    max_power: Annotated[str | None, Opt("--max-power", help="kW the car can take.")] = None,
    currency: Annotated[str, Opt("--currency")] = "usd",
    key: Annotated[Path, Opt("--key", help="The agent's private key.")] = DEFAULT_KEY,
    payment_method: Annotated[str | None, Opt("--payment-method", help="pm_… (test).")] = None,
    spt: Annotated[str | None, Opt("--spt", help="A Shared Payment Token spt_….")] = None,
    limit_session: Annotated[
        str | None, Opt("--limit-session", help="Required: the most one hold may be.")
    ] = None,
    limit_day: Annotated[
        str | None, Opt("--limit-day", help="Required: the most held or spent in a day.")
    ] = None,
    spend_record: Annotated[
        Path, Opt("--spend-record", help="What was spent today (the platform's state directory).")
    ] = DEFAULT_SPEND_RECORD,
    receipt_key: Annotated[
        str | None, Opt("--receipt-key", help="Pin the station's receipt key (base64).")
    ] = None,
    no_events: Annotated[bool, Opt("--no-events", help="Poll instead of SSE.")] = False,
    timeout: Annotated[float, Opt("--timeout", help="Seconds per request.")] = 15.0,
    as_json: Annotated[bool, Opt("--json", help="Print one JSON document.")] = False,
    verbose: Annotated[bool, Opt("--verbose", help="Structured logs on stderr.")] = False,
) -> None:
    """Negotiate with the charge point(s), pay the best deal, charge and check the receipt."""
    configure("INFO" if verbose else "WARNING", "text")
    station = [_station_url(url) for url in station]
    if (payment_method is None) == (spt is None):
        raise _fail("give exactly one of --payment-method pm_… or --spt spt_…")
    for flag, value, what in (
        ("--limit-session", limit_session, "the most one hold may be"),
        ("--limit-day", limit_day, "the most this car may hold or spend in a day"),
    ):
        if value is None:
            raise _fail(f"{flag} is required: {what}, e.g. {flag} 50.00")
    try:
        instrument = Instrument(payment_method or spt or "")
        budget_money = Money(_amount(budget, "budget"), currency).rounded()
        goal = Goal(
            energy_kwh=_amount(energy, "energy"),
            budget=budget_money,
            departure_at=parse_departure(departure, utc_now()),
            max_power_kw=_amount(max_power, "max-power") if max_power else None,
        )
        limits = SpendLimits(
            Money(_amount(limit_session or "", "limit-session"), currency),
            Money(_amount(limit_day or "", "limit-day"), currency),
        )
    except (ValueError, MoneyError) as exc:
        raise _fail(str(exc)) from exc
    try:
        private_key = load_private_key(key)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _fail(f"--key {key}: {reason} (make one with `chargepay agent keygen`)") from exc
    wallet = Wallet(instrument, limits, JsonFileLedger(spend_record))
    targets = [
        replace(t, receipt_key=receipt_key) for t in _targets(station, charge_point, evse, agent_id)
    ]
    screen = _Screen(goal, quiet=as_json)

    async def run() -> ChargeOutcome:
        async with VehicleAgent(
            agent_id[0], private_key, wallet, timeout_s=timeout, use_events=not no_events,
            on_event=screen, stop_on_cancel=True,
        ) as agent:  # fmt: skip
            return await agent.charge(goal, targets)

    try:
        outcome = asyncio.run(run())
    except AgentError as exc:
        raise _fail(str(exc), EXIT_FAILED) from exc
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    finally:
        screen.close()
    summary = _summary(outcome)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        out.print(_table(summary))
    if outcome.verdict is not None and not outcome.verdict.accepted:
        raise _fail("receipt disputed: " + "; ".join(outcome.verdict.reasons), EXIT_DISPUTE)
    if not outcome.ok:
        raise _fail(
            f"session ended {outcome.session.status}: {outcome.session.detail or ''}", EXIT_FAILED
        )


logging.getLogger("httpx").setLevel(logging.WARNING)


def main() -> None:
    """The `chargepay-agent` command (the same commands as `chargepay agent`)."""
    agent_app(prog_name="chargepay-agent")
