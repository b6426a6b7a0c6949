"""`chargepay agents …` and `chargepay audit …`: the trust area from the shell.

Both talk to the database named by the settings (``CHARGEPAY_DATABASE_URL``)
directly, so they work with the station stopped. Suspending here refuses the
agent's next request on every node at once; each running station node's kill
switch watcher then stops the agent's sessions within seconds.

    chargepay keygen --out agent.pem         a key pair for an agent (prints the public key)
    chargepay agents add --name car-7 --public-key … --limit-per-session 50 …
    chargepay agents list [--status active] [--json] | suspend ID --reason … | resume ID
    chargepay audit verify [--head HASH]     exit 1 naming the first broken row
    chargepay audit export [--output FILE]   JSON lines
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from station.cli_common import fail as _fail
from station.cli_common import print_rows, with_database
from station.domain.money import Money
from station.store.db import Database
from station.store.unit_of_work import SqlUnitsOfWork

T = TypeVar("T")
agents_app = typer.Typer(
    help="The agent registry: who may pay, within which limits.", no_args_is_help=True
)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
ACTOR = "cli"


def _with_db(work: Callable[[Database], Awaitable[T]]) -> T:
    return with_database(work)


def _agent_line(agent: Any) -> dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "owner": agent.owner,
        "status": agent.status,
        "currency": agent.currency,
        "limit_per_session": Money(agent.limit_per_session, agent.currency).to_wire(),
        "limit_per_window": Money(agent.limit_per_window, agent.currency).to_wire(),
        "window_hours": agent.window_hours,
        "allowed_charge_points": agent.allowed_charge_points,
        "suspended_reason": agent.suspended_reason,
    }


@agents_app.command("add")
def add(
    name: str = typer.Option(..., help="A name the operator recognises."),
    public_key: str = typer.Option(..., help="Base64 of the raw 32-byte Ed25519 public key."),
    limit_per_session: str = typer.Option(..., help="Most one session may hold, e.g. 50.00."),
    limit_per_window: str = typer.Option(..., help="Most the rolling window may hold."),
    window_hours: int = typer.Option(24, help="Length of the rolling window."),
    currency: str = typer.Option("usd"),
    owner: str | None = typer.Option(None),
    allow: Annotated[
        list[str] | None, typer.Option(help="Charge points it may use (default: all).")
    ] = None,
) -> None:
    """Register an agent; prints its id."""
    from station.services import agents

    new = agents.NewAgent(
        name=name,
        public_key=public_key,
        currency=currency,
        limit_per_session=limit_per_session,
        limit_per_window=limit_per_window,
        window_hours=window_hours,
        owner=owner,
        allowed_charge_points=allow or None,
    )

    async def work(db: Database) -> str:
        async with SqlUnitsOfWork(db)() as uow:
            agent = await agents.register(uow, new, actor=ACTOR)
            return agent.agent_id

    typer.echo(_with_db(work))


AGENT_STATUSES = ("active", "suspended", "removed")
AGENT_COLUMNS = (
    "agent_id",
    "name",
    "status",
    "currency",
    "limit_per_session",
    "limit_per_window",
    "window_hours",
    "allowed_charge_points",
    "suspended_reason",
)


@agents_app.command("list")
def list_agents(
    status: str | None = typer.Option(None, help="active or suspended"),
    as_json: bool = typer.Option(False, "--json", help="A JSON array, for machines."),
) -> None:
    """The registered agents: a table, or JSON with --json."""
    from station.services import agents

    if status is not None and status not in AGENT_STATUSES:
        _fail(f"--status {status!r} is not a status; use one of {', '.join(AGENT_STATUSES)}")

    async def work(db: Database) -> list[dict[str, Any]]:
        async with SqlUnitsOfWork(db).reader() as uow:
            return [_agent_line(a) for a in await agents.list_all(uow, status=status)]

    print_rows(_with_db(work), AGENT_COLUMNS, as_json=as_json, title="agents")


@agents_app.command("suspend")
def suspend(
    agent_id: str = typer.Argument(...),
    reason: str = typer.Option(..., help="Why (kept in the audit log)."),
) -> None:
    """Refuse the agent's requests from now on; running stations stop its sessions."""
    from station.services import agents

    async def work(db: Database) -> None:
        async with SqlUnitsOfWork(db)() as uow:
            await agents.suspend(uow, agent_id, reason=reason, actor=ACTOR)

    _with_db(work)
    typer.echo(f"{agent_id} suspended")


@agents_app.command("resume")
def resume(
    agent_id: str = typer.Argument(...),
    reason: str = typer.Option("", help="Why (kept in the audit log)."),
) -> None:
    """Let a suspended agent pay again."""
    from station.services import agents

    async def work(db: Database) -> None:
        async with SqlUnitsOfWork(db)() as uow:
            await agents.resume(uow, agent_id, reason=reason, actor=ACTOR)

    _with_db(work)
    typer.echo(f"{agent_id} active")


@agents_app.command("remove")
def remove(
    agent_id: str = typer.Argument(...),
    reason: str = typer.Option(..., help="Why (kept in the audit log)."),
) -> None:
    """Remove an agent (its history stays; audited); refused while one of its sessions is live."""
    from station.services import agents

    async def work(db: Database) -> None:
        async with SqlUnitsOfWork(db)() as uow:
            await agents.remove(uow, agent_id, reason=reason, actor=ACTOR)

    _with_db(work)
    typer.echo(f"{agent_id} removed")


@audit_app.command("verify")
def verify(
    head: str | None = typer.Option(None, help="A head hash noted earlier (catches truncation)."),
) -> None:
    """Check the whole chain; exit 1 naming the first row that does not fit."""
    from station.store import audit

    async def work(db: Database) -> audit.Verification:
        async with db.reader() as session:
            return await audit.verify(session, expected_head=head)

    result = _with_db(work)
    if not result.ok:
        where = f"row {result.broken_seq}" if result.broken_seq is not None else "head"
        typer.echo(f"audit log BROKEN at {where}: {result.reason}", err=True)
        raise typer.Exit(1)
    typer.echo(f"audit log ok: {result.rows} rows, head {result.head}")


@audit_app.command("export")
def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: stdout).")
    ] = None,
    after_seq: int = typer.Option(0, help="Only rows after this sequence number."),
) -> None:
    """Write the log as JSON lines."""
    from station.store import audit

    out = sys.stdout
    if output:
        try:
            out = output.open("w", encoding="utf-8")
        except OSError as exc:
            _fail(
                f"cannot write {output} ({(exc.strerror or str(exc)).lower()}); "
                "give --output a path in an existing, writable folder"
            )

    async def work(db: Database) -> int:
        count = 0
        try:
            async with db.reader() as session:
                async for line in audit.export_lines(session, after_seq=after_seq):
                    out.write(line)
                    count += 1
        finally:
            if output:
                out.close()
        return count

    count = _with_db(work)
    if output:
        typer.echo(f"{count} rows written to {output}", err=True)
