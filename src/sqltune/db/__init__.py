"""Running SQL that sqltune did not write itself, safely, on SQLite files and database servers.

* `sqlite`: SQLite files opened read-only, with an authorizer and a deadline.
* `server`: PostgreSQL and MySQL/MariaDB through SQLAlchemy, one query in a read-only transaction
  with a server-side time limit and a row cap, rolled back.
* `guard`: the single-statement check that runs before anything reaches a server.
* `urls`: server URLs (drivers, `{db_id}` templates, passwords hidden).
* `load`: copying SQLite databases into a server (`sqltune db load`).

`open_database(target)` and `execute(target, sql)` take either a SQLite path (or `sqlite:///` URL)
or a server URL; what they return runs queries the same way for both.
"""

from __future__ import annotations

from pathlib import Path

from sqltune.db.sqlite import QueryResult, SqliteDatabase, connect_readonly, run_query
from sqltune.db.urls import backend, is_url, sqlite_file

__all__ = ["QueryResult", "connect_readonly", "execute", "is_url", "open_database", "run_query"]


def open_database(target: str | Path, decode_errors: str = "replace"):
    """A SQLite file (path or `sqlite:///` URL) or a server database (URL), open for `run(sql,
    timeout, max_rows)` and `close()`. `decode_errors` applies to SQLite text (see connect_readonly)."""
    if isinstance(target, str) and is_url(target) and backend(target) == "sqlite":
        target = sqlite_file(target)
    if isinstance(target, str) and is_url(target):
        from sqltune.db.server import ServerDatabase

        return ServerDatabase(target)
    return SqliteDatabase(target, decode_errors)


def execute(
    target: str | Path, sql: str, timeout: float | None = 30.0, max_rows: int | None = None
) -> QueryResult:
    """Run one untrusted query on a SQLite file or a server URL, read-only, then close."""
    with open_database(target) as database:
        return database.run(sql, timeout, max_rows)
