"""Running untrusted SQL on a PostgreSQL or MySQL/MariaDB server without changing or hanging it.

Each query passes `guard.refusal` (one read-only query, checked before it is sent) and then runs:

* in a transaction declared READ ONLY (PostgreSQL `SET TRANSACTION READ ONLY`, MySQL `START
  TRANSACTION READ ONLY`), which the server enforces for every write, DDL included on PostgreSQL,
  and which is always rolled back;
* under a server-side time limit (`statement_timeout` on PostgreSQL, `max_statement_time` on
  MariaDB, `max_execution_time` on MySQL), so a runaway query is stopped by the server itself;
* with a row cap that the server applies too (a server-side cursor read `max_rows + 1` rows deep
  on PostgreSQL, `sql_select_limit` on MySQL), so a cartesian product is never fetched whole.

The drivers refuse several statements in one call as well (psycopg's extended protocol, PyMySQL
without MULTI_STATEMENTS). The first line of defence is still a read-only database role
(docs/databases.md shows how).
"""

from __future__ import annotations

import time

from sqltune.db.guard import refusal
from sqltune.db.sqlite import QueryResult
from sqltune.db.urls import SQLGLOT_DIALECTS, backend, hide_password, scrub, with_driver
from sqltune.errors import DataError

# What the servers say when their time limit stopped a statement.
TIMEOUT_MARKERS = ("statement timeout", "max_statement_time", "max_execution_time", "interrupted")
SUPPORTED = ("postgresql", "mysql")


class ServerDatabase:
    """One database on a server, one pooled connection, `run` for untrusted queries."""

    def __init__(self, url: str, connect_timeout: float = 10.0):
        import sqlalchemy as sa

        self.url = url
        self.backend = backend(url)
        if self.backend not in SUPPORTED:
            raise DataError(
                f"database URL '{hide_password(url)}': sqltune runs SQL on PostgreSQL and MySQL/MariaDB "
                "servers and SQLite files"
            )
        self.dialect = SQLGLOT_DIALECTS[self.backend]
        key = "connect_timeout"
        try:
            self.engine = sa.create_engine(
                with_driver(url), pool_size=1, max_overflow=0, connect_args={key: int(connect_timeout)}
            )
        except Exception as err:  # bad URL, missing driver
            raise DataError(f"database URL '{hide_password(url)}': {scrub(str(err), url)}") from None
        self._mariadb: bool | None = None

    def __enter__(self) -> ServerDatabase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def _limits(self, conn, timeout: float | None, max_rows: int | None) -> None:
        """Declare the transaction read-only and set the time limit and (MySQL) the row cap."""
        ms = 0 if timeout is None else max(1, int(timeout * 1000))
        if self.backend == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
            return
        if self._mariadb is None:
            self._mariadb = "mariadb" in conn.exec_driver_sql("SELECT VERSION()").scalar().lower()
        if self._mariadb:
            conn.exec_driver_sql(f"SET SESSION max_statement_time = {ms / 1000:.3f}")
        else:
            conn.exec_driver_sql(f"SET SESSION max_execution_time = {ms}")
        limit = "DEFAULT" if max_rows is None else str(max_rows + 1)
        conn.exec_driver_sql(f"SET SESSION sql_select_limit = {limit}")
        conn.exec_driver_sql("START TRANSACTION READ ONLY")

    def run(self, sql: str, timeout: float | None = 30.0, max_rows: int | None = None) -> QueryResult:
        """Run one untrusted query (see the module docstring); errors come back in the result."""
        import sqlalchemy as sa

        why = refusal(sql, self.dialect)
        if why:
            return QueryResult(error=why)
        start = time.perf_counter()
        result = QueryResult()
        try:
            # MySQL's transaction is started by hand (START TRANSACTION READ ONLY), so SQLAlchemy's
            # own BEGIN must not come first: autocommit mode, and the ROLLBACK below ends it.
            options = {"isolation_level": "AUTOCOMMIT"} if self.backend == "mysql" else {}
            with self.engine.connect().execution_options(**options) as conn:
                try:
                    self._limits(conn, timeout, max_rows)
                    cursor = conn.exec_driver_sql(
                        _escape_percent(sql), execution_options={"stream_results": True}
                    )
                    result.columns = list(cursor.keys())
                    want = None if max_rows is None else max_rows + 1
                    rows = cursor.fetchall() if want is None else cursor.fetchmany(want)
                    result.rows = [tuple(row) for row in rows]
                    cursor.close()
                    if max_rows is not None and len(result.rows) > max_rows:
                        result.rows = result.rows[:max_rows]
                        result.error = "too many rows"
                finally:
                    conn.exec_driver_sql("ROLLBACK")
        except sa.exc.SQLAlchemyError as err:
            cause = getattr(err, "orig", None) or err
            message = scrub(str(cause).strip().splitlines()[0] if str(cause).strip() else "", self.url)
            timed_out = any(marker in message.lower() for marker in TIMEOUT_MARKERS)
            result = QueryResult(error="timeout" if timed_out else f"{type(cause).__name__}: {message}")
        result.seconds = time.perf_counter() - start
        return result


def _escape_percent(sql: str) -> str:
    """The drivers read `%` as a parameter marker even with no parameters given; `%%` is a `%`."""
    return sql.replace("%", "%%")
