"""Copying SQLite databases into PostgreSQL or MySQL/MariaDB (`sqltune db load`), one server database
per db_id, so that a benchmark's questions can be asked and scored on a real server.

    load_databases(Path("../shared/data/spider/database"), "postgresql://postgres@127.0.0.1:5432/{db_id}")

The SQLite file is opened read-only and reflected with SQLAlchemy (`load_plan` decides what each
table becomes); the server gets the same tables, keys and rows, and a `LoadReport` says what had to
change. The rules, and why:

* Names: every table and column is created in lower case (ASCII letters only, the folding SQLite and
  PostgreSQL apply) and otherwise as in SQLite, quoted only where the server needs it (spaces,
  reserved words: `"order"."group name"`). SQLite compares identifiers case-insensitively, quoted or
  not, so Spider's SQL writes `CARS_DATA`, `T1.ContId` or `"Name"` for `cars_data.contid`.
  PostgreSQL folds unquoted names to lower case, so such SQL runs there as written as long as it
  quotes nothing. SQL that quotes identifiers, and all SQL on a MySQL server whose table names are
  case-sensitive (`lower_case_table_names=0`, the Linux default; the report notes it), runs once
  every identifier is lower-cased, quoted or not, which is SQLite's own rule (`server_name`).
* Types follow what SQLite actually stores, not only what it declares (SQLite keeps any value in any
  column). A declared integer, real, boolean or date column holding text becomes text; an integer
  column holding fractions becomes DOUBLE; each is a line of the report. Integers are INTEGER, or
  BIGINT when a value needs it; REAL/FLOAT/DOUBLE, and DECIMAL/NUMERIC columns with fractions, are
  DOUBLE PRECISION (SQLite computes with doubles: an exact NUMERIC would return Decimals that differ
  from SQLite's floats); NUMERIC columns holding only integers and BOOLEAN columns (0/1) are
  integers, as SQLite computes with them. DATE/DATETIME/TIMESTAMP become DATE or TIMESTAMP (MySQL:
  DATETIME) only when every value is a valid `YYYY-MM-DD[ HH:MM:SS]` from year 1000 on (MySQL's
  range), so `str(value)` gives back SQLite's text exactly; other date text (`04/12/2005 09:30`,
  `1987-7-1`, `0000-00-00`) is loaded as text and reported. VARCHAR(n)/CHAR(n) keep n where the
  values fit (CHAR as VARCHAR: no padding), else TEXT ("widened"); BLOB is BYTEA/BLOB. A declared
  type SQLAlchemy does not know (VARCHAR2, NUMBER, SMALLINT UNSIGNED) or none at all is read by
  SQLite's affinity rules and reported, one line per type.
* Text holding numbers stays text (`concert.year` holds '2014'): SQLite compares such a column with
  a number as text (`year = 2014` is `year = '2014'`), and so will the server once the number is
  quoted; the servers refuse `text = integer` as written. The exception is a foreign key: a TEXT
  column holding only integers that refers to an INTEGER key (or is referred to by one) becomes an
  integer, because SQLite joins the two as numbers and the servers could not join them at all.
* Text compares and sorts by code point, as in SQLite: PostgreSQL columns use COLLATE "C", MySQL
  tables a binary no-pad collation (MariaDB utf8mb4_nopad_bin, MySQL 8 utf8mb4_0900_bin), so `=`,
  ORDER BY, GROUP BY and keys behave as on SQLite. LIKE does not: SQLite's LIKE ignores ASCII case,
  the servers' LIKE on these collations does not (PostgreSQL has ILIKE).
* Keys: primary keys and UNIQUE constraints as in SQLite; foreign keys are added after the rows, one
  at a time, and one that cannot hold (a missing table or column, parent columns that are not a key,
  different types, rows with no parent: SQLite does not enforce foreign keys) is skipped and
  reported instead of stopping the load. A primary key with NULLs (SQLite allows them) is dropped.
  MySQL indexes at most 3072 bytes: its key columns become VARCHAR(n) with n from the data, and a
  longer key is dropped and reported.
* Values: the rows are copied unchanged, read from SQLite and inserted in chunks (executemany).
  The exceptions are reported: text that is not valid UTF-8 (bad bytes become U+FFFD) and, on
  PostgreSQL, NUL characters (removed: its text cannot hold them).
* Idempotent: the tables the SQLite file has are dropped and created again on every run (tables of
  other names in the server database are left alone), so a rerun gives the same content. On
  PostgreSQL the whole database is replaced in one transaction: a failed load leaves the old content;
  MySQL commits each DDL statement at once, so a failed load there leaves a partial database.
* Verified: after loading, the server's row count of every table is compared with SQLite's.
* The server database is created when missing (PostgreSQL: UTF8 with the C locale; MySQL: utf8mb4
  with the collation above).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqltune.db.load_plan import (
    FK_SKIPPED,
    KEY_DROPPED,
    VALUE_CHANGED,
    Change,
    ColumnPlan,
    TablePlan,
    fit_mysql_row,
    plan_keys,
    plan_types,
    quote_name,
    read_plans,
    server_name,
)
from sqltune.db.sqlite import connect_readonly, find_db_file, folder_databases
from sqltune.db.urls import DB_ID, backend, for_database, hide_password, scrub, server_url, with_driver
from sqltune.errors import ConfigError, DataError

CHUNK_ROWS = 5000
MYSQL_VARCHAR_MAX = 16383  # the longest utf8mb4 VARCHAR
MYSQL_SQL_MODE = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"


@dataclass
class LoadReport:
    """What one `load_database` call did: tables and rows on the server, and every change."""

    db_id: str
    url: str  # the target database, password hidden
    tables: dict[str, int] = field(default_factory=dict)  # server table name -> rows
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the server rather than the data
    verified: bool = False  # every table's row count on the server equals SQLite's
    created: bool = False  # the server database did not exist and was created
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows": self.rows}


class _Utf8Counter:
    """A text factory that decodes like `connect_readonly` and counts the values that were not UTF-8."""

    def __init__(self) -> None:
        self.bad = 0

    def __call__(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad += 1
            return raw.decode("utf-8", errors="replace")


# --- the server side ----------------------------------------------------------------------------------
def _server_type(column: ColumnPlan, mysql: bool) -> Any:
    import sqlalchemy as sa

    kind = column.kind
    simple = {
        "integer": sa.Integer, "bigint": sa.BigInteger, "double": sa.Double, "date": sa.Date,
        "datetime": sa.DateTime, "time": sa.Time,
    }  # fmt: skip
    if kind in simple:
        return simple[kind]()
    if kind == "binary":
        return sa.LargeBinary(length=max(column.profile.longest, 1) if mysql else None)
    if not mysql:
        return sa.String(column.length, collation="C") if column.length else sa.Text(collation="C")
    if column.key_length:
        return sa.String(column.key_length)
    if column.length and column.length <= MYSQL_VARCHAR_MAX:
        return sa.String(column.length)
    return sa.Text(max(column.profile.longest, 1))  # MySQL picks TEXT, MEDIUMTEXT or LONGTEXT


def build_tables(plans: list[TablePlan], mysql: bool, collation: str | None) -> Any:
    """The server's tables (without foreign keys and unique constraints: added after the rows)."""
    import sqlalchemy as sa

    metadata = sa.MetaData()
    options = {"mysql_charset": "utf8mb4", "mysql_collate": collation} if mysql else {}
    for plan in plans:
        if mysql:
            fit_mysql_row(plan)
        columns = [
            sa.Column(c.server_name, _server_type(c, mysql), nullable=c.nullable, autoincrement=False)
            for c in plan.columns
        ]
        table = sa.Table(server_name(plan.name), metadata, *columns, **options)
        if plan.primary_key:
            table.append_constraint(sa.PrimaryKeyConstraint(*[server_name(n) for n in plan.primary_key]))
    return metadata


def _converters(plan: TablePlan, postgres: bool, changes: list[Change]) -> list[Callable[[Any], Any] | None]:
    """Per column, what a value needs on its way to the server (None: nothing)."""
    parse = {
        "date": dt.date.fromisoformat,
        "datetime": dt.datetime.fromisoformat,
        "time": dt.time.fromisoformat,
    }
    converters: list[Callable[[Any], Any] | None] = []
    for column in plan.columns:
        if column.kind in parse:
            converters.append(parse[column.kind])
        elif column.kind == "text" and postgres:
            converters.append(_NulRemover(plan.name, column.name, changes))
        else:
            converters.append(None)
    return converters


class _NulRemover:
    """PostgreSQL's text cannot hold NUL characters: drop them, and report the column once."""

    def __init__(self, table: str, column: str, changes: list[Change]):
        self.table, self.column, self.changes, self.count = table, column, changes, 0

    def __call__(self, value: str) -> str:
        if "\x00" not in value:
            return value
        self.count += 1
        if self.count == 1:
            self.changes.append(Change(VALUE_CHANGED, self.table, self.column, "NUL characters removed"))
        return value.replace("\x00", "")


def _select_sql(plan: TablePlan) -> str:
    """The SELECT that reads a table: values that change type on the way are converted by SQLite
    itself (CAST), so numbers in a text column arrive as the text SQLite compares them as."""
    parts = []
    for column in plan.columns:
        q = quote_name(column.name)
        p = column.profile
        if column.kind == "text" and (p.integers or p.reals or p.blobs):
            q = f"CAST({q} AS TEXT)"
        elif column.kind in ("integer", "bigint", "double") and p.texts:  # integer-like (_same_type)
            q = f"CAST({q} AS {'REAL' if column.kind == 'double' else 'INTEGER'})"
        parts.append(q)
    return f"SELECT {', '.join(parts)} FROM {quote_name(plan.name)}"


def _rows(sqlite_conn, plan: TablePlan, converters: list) -> Iterator[list[dict]]:
    keys = [c.server_name for c in plan.columns]
    pairs = [(i, f) for i, f in enumerate(converters) if f is not None]
    cursor = sqlite_conn.exec_driver_sql(_select_sql(plan))
    while chunk := cursor.fetchmany(CHUNK_ROWS):
        if pairs:
            chunk = [list(row) for row in chunk]
            for row in chunk:
                for i, convert in pairs:
                    if row[i] is not None:
                        row[i] = convert(row[i])
        yield [dict(zip(keys, row, strict=True)) for row in chunk]


def _mysql_collation(conn) -> str:
    """A binary collation that ignores no trailing spaces (SQLite compares text byte by byte)."""
    version = conn.exec_driver_sql("SELECT VERSION()").scalar().lower()
    if "mariadb" in version:
        return "utf8mb4_nopad_bin"
    return "utf8mb4_0900_bin" if int(version.split(".")[0]) >= 8 else "utf8mb4_bin"


def _server_error(what: str, url: str, err: Exception) -> DataError:
    """One line: what failed, where (password hidden), and the server's first line about it."""
    cause = getattr(err, "orig", None) or err
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return DataError(f"{what}: {scrub(text, url)}")


def ensure_database(url: str) -> tuple[bool, str | None]:
    """Create the URL's database when it is missing; return whether it was created and (MySQL)
    the collation its tables get."""
    import sqlalchemy as sa

    target = sa.engine.make_url(with_driver(url))
    name, mysql = target.database, backend(url) == "mysql"
    if not name:
        raise ConfigError(f"url '{hide_password(url)}' names no database (add /{DB_ID})")
    admin = sa.create_engine(
        sa.engine.make_url(with_driver(server_url(url))) if mysql else target.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 10},
    )
    try:
        with admin.connect() as conn:
            collation = _mysql_collation(conn) if mysql else None
            if mysql:
                exists = "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"
            else:
                exists = "SELECT 1 FROM pg_database WHERE datname = :name"
            if conn.execute(sa.text(exists), {"name": name}).first():
                return False, collation
            quoted = conn.dialect.identifier_preparer.quote_identifier(name)
            suffix = (
                f" CHARACTER SET utf8mb4 COLLATE {collation}"
                if mysql
                else " ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            )
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}{suffix}")
            return True, collation
    except sa.exc.DBAPIError as err:
        raise _server_error(f"cannot use the server at {hide_password(url)}", url, err) from None
    finally:
        admin.dispose()


def _attempt(conn, statement, postgres: bool) -> str | None:
    """Run one DDL statement that may fail (a foreign key the data breaks); the server's message if it
    does. PostgreSQL runs it in a savepoint; MySQL commits DDL at once anyway."""
    import sqlalchemy as sa

    try:
        if postgres:
            with conn.begin_nested():
                conn.execute(statement)
        else:
            conn.execute(statement)
        return None
    except sa.exc.DBAPIError as err:
        if not postgres:
            conn.rollback()
        cause = getattr(err, "orig", None) or err
        return str(cause).strip().splitlines()[0]


def load_database(sqlite_path: str | Path, url: str, db_id: str | None = None) -> LoadReport:
    """Copy one SQLite file into the server database `url` names (created when missing); drop and
    recreate its tables, so a rerun gives the same content. See the module docstring."""
    import sqlalchemy as sa

    start = time.perf_counter()
    sqlite_path = Path(sqlite_path)
    db_id = db_id or sqlite_path.stem
    kind = backend(url)
    if kind not in ("postgresql", "mysql"):
        raise ConfigError(
            f"url '{hide_password(url)}': db load writes to PostgreSQL or MySQL/MariaDB servers"
        )
    mysql = kind == "mysql"
    report = LoadReport(db_id, hide_password(url))
    utf8 = _Utf8Counter()

    def open_sqlite():
        conn = connect_readonly(sqlite_path, authorizer=False)
        conn.text_factory = utf8
        return conn

    connect_readonly(sqlite_path, authorizer=False).close()  # a missing file: DataError naming it
    source = sa.create_engine("sqlite://", creator=open_sqlite, poolclass=sa.pool.StaticPool)
    try:
        with source.connect() as lite:
            plans = read_plans(lite)
            report.changes += plan_types(plans, mysql)
            report.changes += plan_keys(plans, mysql, lite)
            report.created, collation = ensure_database(url)
            _write(lite, plans, url, report, collation, utf8)
    finally:
        source.dispose()
    report.seconds = round(time.perf_counter() - start, 2)
    return report


def _write(lite, plans: list[TablePlan], url: str, report: LoadReport, collation: str | None, utf8) -> None:
    import sqlalchemy as sa

    mysql = backend(url) == "mysql"
    postgres = not mysql
    metadata = build_tables(plans, mysql, collation)
    args = {"connect_timeout": 10, **({"charset": "utf8mb4", "binary_prefix": True} if mysql else {})}
    engine = sa.create_engine(with_driver(url), poolclass=sa.pool.NullPool, connect_args=args)
    try:
        with engine.connect() as conn:
            if mysql:
                conn.exec_driver_sql(f"SET SESSION sql_mode = '{MYSQL_SQL_MODE}'")
                if conn.exec_driver_sql("SELECT @@lower_case_table_names").scalar() == 0:
                    report.notes.append(
                        "table names are case-sensitive on this server (lower_case_table_names=0): "
                        "SQL must name tables in lower case"
                    )
            _drop(conn, metadata, mysql)
            metadata.create_all(conn)
            for plan in plans:
                table = metadata.tables[server_name(plan.name)]
                before = utf8.bad
                for chunk in _rows(lite, plan, _converters(plan, postgres, report.changes)):
                    try:
                        conn.execute(table.insert(), chunk)
                    except sa.exc.DBAPIError as err:
                        what = f"{report.db_id}: table {plan.name}: the server refused a row"
                        raise _server_error(what, url, err) from None
                if utf8.bad > before:
                    detail = f"{utf8.bad - before} text value(s) not valid UTF-8: bad bytes became U+FFFD"
                    report.changes.append(Change(VALUE_CHANGED, plan.name, None, detail))
            counts = {
                table: conn.execute(sa.select(sa.func.count()).select_from(metadata.tables[table])).scalar()
                for table in metadata.tables
            }
            expected = {server_name(p.name): p.rows for p in plans}
            report.tables = counts
            report.verified = counts == expected
            if mysql:
                conn.commit()
            _add_constraints(conn, plans, metadata, postgres, report)
            conn.commit()
    except sa.exc.DBAPIError as err:
        raise _server_error(f"{report.db_id}: {hide_password(url)}", url, err) from None
    finally:
        engine.dispose()


def _drop(conn, metadata, mysql: bool) -> None:
    """Drop the tables about to be created (and, PostgreSQL, foreign keys that point at them)."""
    preparer = conn.dialect.identifier_preparer
    if mysql:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
    for table in metadata.tables.values():
        cascade = "" if mysql else " CASCADE"
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {preparer.format_table(table)}{cascade}")
    if mysql:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")


def _add_constraints(conn, plans: list[TablePlan], metadata, postgres: bool, report: LoadReport) -> None:
    import sqlalchemy as sa

    for plan in plans:
        table = metadata.tables[server_name(plan.name)]
        for unique in plan.uniques:
            constraint = sa.UniqueConstraint(*[server_name(n) for n in unique])
            table.append_constraint(constraint)
            why = _attempt(conn, sa.schema.AddConstraint(constraint), postgres)
            if why:
                report.changes.append(
                    Change(KEY_DROPPED, plan.name, None, f"unique ({', '.join(unique)}): {why}")
                )
    for plan in plans:
        table = metadata.tables[server_name(plan.name)]
        for fk in plan.foreign_keys:
            parent = server_name(fk.parent)
            constraint = sa.ForeignKeyConstraint(
                [server_name(n) for n in fk.columns],
                [f"{parent}.{server_name(n)}" for n in fk.parent_columns],
            )
            table.append_constraint(constraint)
            why = _attempt(conn, sa.schema.AddConstraint(constraint), postgres)
            if why:
                target = f"({', '.join(fk.columns)}) -> {fk.parent}({', '.join(fk.parent_columns)})"
                report.changes.append(Change(FK_SKIPPED, plan.name, None, f"{target}: {why}"))


# --- many databases -----------------------------------------------------------------------------------
def database_template(url: str) -> str:
    """`url` with `{db_id}` where the database name goes: as given, or appended when the URL names no
    database (`postgresql://user@host:5432/` loads every db_id into a database of its own name)."""
    if DB_ID in url:
        return url
    head, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    database, question, query = path.partition("?")
    if database:
        return url
    return f"{head}{sep}{authority}/{DB_ID}{question}{query}"


def find_databases(db_dir: str | Path, db_ids: list[str] | None = None) -> dict[str, Path]:
    """db_id -> `<db_dir>/<db_id>/<db_id>.sqlite`, every database in the folder or the named ones."""
    db_dir = Path(db_dir)
    if not db_dir.is_dir():
        raise DataError(f"database folder not found: {db_dir}")
    if db_ids is None:
        found = dict(folder_databases(db_dir))
        if not found:
            raise DataError(f"no databases in {db_dir} (expected <db_id>/<db_id>.sqlite or *.sqlite)")
        return found
    paths = {}
    for db_id in db_ids:
        path = find_db_file(db_dir, db_id)
        if path is None:
            raise DataError(f"db_id '{db_id}' not found: no {db_dir / db_id / (db_id + '.sqlite')}")
        paths[db_id] = path
    return paths


def load_databases(
    db_dir: str | Path, url_template: str, db_ids: list[str] | None = None, progress: bool = False
) -> list[LoadReport]:
    """Load every database of a Spider-style folder (or the named db_ids) into the server, each into
    the database `{db_id}` names in the URL. Stops at the first database that fails (DataError)."""
    paths = find_databases(db_dir, db_ids)
    template = database_template(url_template)
    if DB_ID not in template and len(paths) > 1:
        raise ConfigError(
            f"url '{hide_password(template)}' names one database but {len(paths)} are to be loaded: put "
            f"{DB_ID} where the database name goes"
        )
    from tqdm import tqdm

    reports = []
    # progress: a bar on a terminal (tqdm's disable=None), not in logs and pipes
    with tqdm(paths.items(), desc="db load", unit="db", disable=None if progress else True) as bar:
        for db_id, path in bar:
            bar.set_postfix_str(db_id)
            reports.append(load_database(path, for_database(template, db_id), db_id))
    return reports
