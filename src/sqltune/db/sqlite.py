"""Running SQL safely against a SQLite file: read-only, time-limited, row-limited.

Used wherever sqltune executes SQL it did not write itself (evaluation, synthesis checks,
execution-guided decoding, `sqltune ask`). The database is opened with the URI flag `mode=ro`, an
authorizer refuses anything but reading, and a progress handler interrupts a query once its time
is up, so a slow or hostile query can neither change a file nor hang the run.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqltune.errors import DataError

# Authorizer action codes that only read. Everything else (writes, DDL, ATTACH, PRAGMA, transactions)
# is denied.
_READ_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
_PROGRESS_STEPS = 1000  # virtual machine instructions between deadline checks
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")  # what a SQLite database file is called


def _authorize(action: int, *_: Any) -> int:
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


def connect_readonly(
    path: str | Path, decode_errors: str = "replace", authorizer: bool = True
) -> sqlite3.Connection:
    """Open a SQLite file read-only; a missing file is a DataError naming it (never a new empty DB).

    `decode_errors` is how text that is not valid UTF-8 is decoded ("replace" shows it, "ignore"
    drops the bad bytes as the official Spider evaluator does). `authorizer=False` is for trusted
    SQL only, such as reading the schema through PRAGMA functions; the file stays read-only.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"database not found: {path}")
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    conn.text_factory = lambda raw: raw.decode("utf-8", errors=decode_errors)
    if authorizer:
        conn.set_authorizer(_authorize)
    return conn


@dataclass
class QueryResult:
    rows: list[tuple] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    error: str | None = None  # None, "timeout", "too many rows", or the database's message
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def run_query(
    conn: sqlite3.Connection, sql: str, timeout: float | None = 30.0, max_rows: int | None = None
) -> QueryResult:
    """Execute one statement and fetch its rows, stopping at `timeout` seconds or `max_rows` rows."""
    start = time.perf_counter()
    deadline = None if timeout is None else start + timeout
    if deadline is not None:
        conn.set_progress_handler(lambda: int(time.perf_counter() > deadline), _PROGRESS_STEPS)
    result = QueryResult()
    try:
        cursor = conn.execute(sql)
        result.columns = [d[0] for d in cursor.description or []]
        while True:
            batch = cursor.fetchmany(1024)
            if not batch:
                break
            result.rows.extend(batch)
            if max_rows is not None and len(result.rows) > max_rows:
                result.rows = result.rows[:max_rows]
                result.error = "too many rows"
                break
    except (sqlite3.Error, sqlite3.Warning) as err:  # Python 3.10 raises Warning for two statements
        timed_out = (
            deadline is not None and time.perf_counter() > deadline and "interrupt" in str(err).lower()
        )
        result.error = "timeout" if timed_out else f"{type(err).__name__}: {err}"
        result.rows = []
    except (ValueError, OverflowError, MemoryError) as err:  # e.g. an embedded NUL, huge integers
        result.error = f"{type(err).__name__}: {err}"
        result.rows = []
    finally:
        conn.set_progress_handler(None, 0)
    result.seconds = time.perf_counter() - start
    return result


def execute(
    path: str | Path, sql: str, timeout: float | None = 30.0, max_rows: int | None = None
) -> QueryResult:
    """Open `path` read-only, run `sql`, close."""
    conn = connect_readonly(path)
    try:
        return run_query(conn, sql, timeout, max_rows)
    finally:
        conn.close()


class SqliteDatabase:
    """A SQLite file held open read-only: the same `run`/`close` shape as `server.ServerDatabase`,
    so callers that run many queries need not care which kind of database they hold."""

    def __init__(self, path: str | Path, decode_errors: str = "replace"):
        self.path = Path(path)
        self.backend = self.dialect = "sqlite"
        self.conn = connect_readonly(self.path, decode_errors=decode_errors)

    def __enter__(self) -> SqliteDatabase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, sql: str, timeout: float | None = 30.0, max_rows: int | None = None) -> QueryResult:
        return run_query(self.conn, sql, timeout, max_rows)

    def close(self) -> None:
        self.conn.close()


def find_db_file(db_dir: str | Path, db_id: str) -> Path | None:
    """The SQLite file of `db_id` under db_dir, or None when absent.

    Spider's layout `<db_id>/<db_id>.sqlite` comes first; a flat `<db_id>.sqlite` (CHASE ships its
    databases that way) is accepted too."""
    db_dir = Path(db_dir)
    folder = db_dir / db_id
    for candidate in (
        folder / f"{db_id}.sqlite",
        folder / f"{db_id}.db",
        db_dir / f"{db_id}.sqlite",
        db_dir / f"{db_id}.db",
    ):
        if candidate.is_file():
            return candidate
    return None


def folder_databases(folder: str | Path) -> list[tuple[str, Path]]:
    """(db_id, file) of every SQLite database in a folder: Spider's `<db>/<db>.sqlite` subfolders
    first, then the SQLite files directly inside it, each in name order."""
    folder = Path(folder)
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        path = find_db_file(folder, sub.name)
        if path is not None and path.parent == sub:
            found.append((sub.name, path))
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SQLITE_SUFFIXES):
        found.append((path.stem, path))
    return found
