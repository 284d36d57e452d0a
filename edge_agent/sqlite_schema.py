"""Schema versions of the agent's SQLite files (watchlist, event store, body-cam progress), in one place.

`PRAGMA user_version` holds a file's schema version. `migrate` brings an older file up to date inside one
transaction and refuses a newer one (written by a newer edge-agent) with one line naming the file.
Connections are in autocommit mode (`isolation_level=None`), so the transaction is explicit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence

from edge_agent.errors import EdgeAgentError

Migration = Callable[[sqlite3.Connection], None]


def statements(*sql: str) -> Migration:
    """A migration that runs these statements in order."""

    def run(conn: sqlite3.Connection) -> None:
        for statement in sql:
            conn.execute(statement)

    return run


def migrate(
    conn: sqlite3.Connection,
    path: object,
    what: str,
    migrations: Mapping[int, Migration] | Sequence[Migration],
    error: type[EdgeAgentError] = EdgeAgentError,
) -> int:
    """Runs the migrations after the file's version (1, 2, ...); returns the version it had before."""
    steps = dict(enumerate(migrations, start=1)) if isinstance(migrations, Sequence) else dict(migrations)
    latest = max(steps)
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > latest:
        raise error(
            f"{path}: {what} schema version {found} is newer than this edge-agent understands "
            f"({latest}); upgrade edge-agent"
        )
    if found == latest:
        return int(found)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for version in range(found + 1, latest + 1):
            steps[version](conn)
        conn.execute(f"PRAGMA user_version = {latest}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return int(found)
