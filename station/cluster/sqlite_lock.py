"""SQLite is one node's: `serve` holds an exclusive lock on a file next to the database.

A second `serve` on the same SQLite file gets a `StartupError` (one line, exit 2).
The lock (``fcntl.flock`` on ``<database>.lock``) goes with the process, a crash too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import IO

from sqlalchemy.engine import make_url

from station.startup import StartupError


def hold(database_url: str) -> IO[str] | None:
    """Lock the SQLite file's lock file for this process; None for PostgreSQL or memory.

    Keep the returned file open for as long as the node runs.
    """
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    path = f"{os.path.abspath(url.database)}.lock"
    try:
        lock = open(path, "a+")  # noqa: SIM115 (held open while the node runs)
    except OSError:
        return None  # an unwritable directory: opening the database reports it
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip()
        lock.close()
        who = f" (pid {holder})" if holder else ""
        raise StartupError(
            f"another station node already serves the SQLite database {url.database}{who};"
            " SQLite is single-node: run several nodes on PostgreSQL (docs/cluster.md)"
        ) from None
    with contextlib.suppress(OSError):
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
    return lock
