"""What every `chargepay` command shares: settings, the one-line error, the database.

A problem the operator can fix is one line on stderr and exit status 2
(`fail`, `StartupError`), never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import pydantic
import typer
from rich.console import Console
from rich.markup import escape

from station.errors import ChargepayError
from station.logs import configure as configure_logging
from station.settings import Settings
from station.startup import StartupError, open_database, settings_error_line
from station.store.db import Database

T = TypeVar("T")
EXIT_USAGE = 2
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env; a bad value exits naming the field."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except pydantic.ValidationError as exc:
        fail(settings_error_line(exc))


def with_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run one piece of work on the configured database, migrated first.

    A database that cannot be opened, or a refusal by the service layer,
    ends the command with one line.
    """
    settings = load_settings()
    configure_logging("WARNING", settings.log_format)

    async def main() -> T:
        db = await open_database(settings.database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except StartupError as exc:
        fail(str(exc))
    except ChargepayError as exc:
        fail(exc.detail)


def print_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, as_json: bool, title: str = ""
) -> None:
    """The one output convention: a rich table for people, `--json` (a JSON array) for machines."""
    if as_json:
        typer.echo(json.dumps(list(rows), default=str))
        return
    from rich.table import Table

    table = Table(*(c.replace("_", " ") for c in columns), title=title or None)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    # Piped output is not cut to 80 columns: a row stays one line for grep.
    Console(width=max(Console().width, 200) if not Console().is_terminal else None).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return escape(str(value))
