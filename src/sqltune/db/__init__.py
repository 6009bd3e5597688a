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
from sqltune.errors import DataError

__all__ = [
    "QueryResult",
    "connect_readonly",
    "execute",
    "is_url",
    "open_database",
    "run_query",
    "unreachable",
]


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


def unreachable(url: str, db_ids, timeout: float | None = 10.0, limit: int = 3) -> list[str]:
    """The db_ids whose database at `url` (`{db_id}` filled in) does not answer `SELECT 1`, each as
    'db_id (URL with the password hidden: why)', so that a run over many databases can stop before
    it starts. It stops after `limit`: a server that is down takes a connect timeout per database."""
    from sqltune.db.urls import for_database, hide_password

    failed = []
    for db_id in db_ids:
        target = for_database(url, db_id)
        try:
            with open_database(target) as database:
                error = database.run("SELECT 1", timeout).error
        except DataError as err:  # e.g. a sqlite:/// URL whose file is not there
            error = str(err)
        if error:
            failed.append(f"{db_id} ({hide_password(target)}: {error})")
            if len(failed) >= limit:
                break
    return failed
