"""SQL dialects for `sqltune data`: gold SQL transpiled from SQLite and checked by execution.

Spider, SParC, CoSQL and most of BIRD write their gold SQL for SQLite. With `dialect=postgres` or
`dialect=mysql`, each gold query is transpiled by sqlglot (read sqlite, write the dialect) and kept
only if, on the server where `sqltune db load` copied the databases (`db_url=`, `{db_id}` where the
name goes), it returns what the original returns on the SQLite file. The rest are skipped and
counted by reason (transpile error, server error by class, different result, timeout), so a dataset
never teaches SQL that does not run, or that answers another question, on the server.

The transpiling is `sqltune.data.transpile`: sqlglot, plus the rules of SQLite's it cannot know
without the database (names, text affinity), in two versions: the plain one a person would write,
and a careful one that keeps SQLite's behaviour with NULLs, LIKE and GROUP BY. The first version
that returns SQLite's result on the server is kept.

Results are compared by the execution-match rules of `sqltune.evaluate.execution.results_match`
(bag of rows up to column order; row order only when the gold orders), after both sides' values are
normalised, because the engines return the same answer in different types (see `normalise`).
"""

from __future__ import annotations

import datetime
import decimal
import functools
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.example import Example
from sqltune.data.schema import Schema
from sqltune.data.sources import Skips, SourceData
from sqltune.data.transpile import ServerNames, TranspileError, first_line, orders, tie_broken, transpile
from sqltune.errors import ConfigError, DataError

__all__ = ["DIALECT_NAMES", "DialectCheck", "read_in_dialect", "to_dialect"]

DIALECT_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MySQL"}
URL_BACKENDS = {"postgres": "postgresql", "mysql": "mysql"}  # sqltune.db.urls.backend of each dialect
TIES = "different result (ties in ORDER BY)"
CHECK_TIMEOUT = 30.0  # seconds per query on SQLite, and on the server unless told otherwise
MAX_ROWS = 100_000  # a gold result larger than this is not compared (none in Spider comes close)
DECIMALS = 4  # MySQL computes `/` and AVG with 4 more decimals than the operands (div_precision_increment)
DIGITS = 10  # significant digits: sums of floats in another order differ in the last bits


# ---- comparing results ---------------------------------------------------------------------------
def normalise(value):
    """One value as the three engines agree to show it, so that the same answer compares equal.

    Numbers: booleans are 0/1 (SQLite has none); Decimal (PostgreSQL's NUMERIC and AVG, MySQL's
    DECIMAL, SUM and `/`) becomes float; whole numbers become int (SUM of reals is 3.0 in SQLite, 3
    elsewhere); the rest are rounded to 4 decimals (MySQL's `/` and AVG stop there) and 10
    significant digits (floating sums added in another order). Text that is a number as SQLite writes
    it ('3', '-1.5') is that number: `db load` turns a text column of integers that joins an integer
    column into integers, and numbers in a text column into their text. Dates and times are their ISO
    text, which is what SQLite holds (`db load` types a column as a date only when that is so).
    Binary is bytes. Other text compares exactly.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return normalise(float(value)) if _NUMBER.fullmatch(value) else value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (float, decimal.Decimal)):
        number = float(value)
        if not math.isfinite(number):
            return number
        number = float(f"{round(number, DECIMALS):.{DIGITS}g}")
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if isinstance(value, (datetime.date, datetime.time)):  # datetime too: 'YYYY-MM-DD HH:MM:SS'
        return str(value)
    if isinstance(value, datetime.timedelta):  # MySQL's TIME
        seconds = int(value.total_seconds())
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return value


_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,15})(\.[0-9]+)?")


def normalised(rows: list[tuple]) -> list[tuple]:
    return [tuple(normalise(v) for v in row) for row in rows]


def difference(gold: list[tuple], got: list[tuple], ordered: bool) -> str | None:
    """None when the results match by the execution-match rules, else how they differ."""
    from sqltune.evaluate.execution import results_match

    gold, got = normalised(gold), normalised(got)
    if results_match(gold, got, ordered):
        return None
    if len(gold) != len(got):
        return "row count"
    if ordered and results_match(gold, got, False):
        return "row order"
    return "values"


# ---- server errors -------------------------------------------------------------------------------
# (class, pattern of the message of PostgreSQL or MySQL/MariaDB), tried in this order
ERROR_CLASSES = (
    ("GROUP BY strictness", r"must appear in the group by clause|isn't in group by|only_full_group_by"),
    ("ORDER BY outside SELECT DISTINCT", r"order by expressions must appear in select list"),
    ("LIMIT in a subquery", r"limit & in/all/any/some subquery"),
    ("unknown function or argument types", r"function .*does not exist|no function matches"),
    (
        "type mismatch",
        r"operator does not exist|invalid input syntax|cannot be matched|must be type|could not determine"
        r"|incorrect .*value|illegal mix|out of range|cannot cast|datatype mismatch",
    ),
    (
        "unknown table or column",
        r"(column|relation|table) .*does not exist|unknown column|doesn't exist|missing from-clause|unknown table",
    ),
    ("ambiguous column", r"ambiguous"),
    ("division by zero", r"division by zero"),
    ("syntax error", r"syntax"),
)


def error_class(message: str) -> str:
    """The kind of a server's error message (for the counts of skipped examples)."""
    lowered = message.lower()
    return next((name for name, pattern in ERROR_CLASSES if re.search(pattern, lowered)), "other")


# ---- checking ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What became of one gold query: its SQL in the dialect, or why there is none."""

    sql: str | None
    reason: str | None = None  # the skip reason, e.g. "server error (GROUP BY strictness)"
    detail: str = ""  # the transpile or server message, or how the results differ
    changed: bool = False  # the dialect's SQL differs from the SQLite SQL as sqlglot writes it
    careful: bool = False  # the careful version was needed


class DialectCheck:
    """Transpiles gold queries into a dialect and keeps those that return the SQLite result on the
    server. One SQLite file and one server database stay open per db_id; outcomes are remembered,
    so the earlier turns of a conversation are not checked twice. `timeout` is per query on the
    server; the SQLite original, the reference, always has CHECK_TIMEOUT."""

    def __init__(self, dialect: str, url: str, timeout: float = CHECK_TIMEOUT, max_rows: int = MAX_ROWS):
        self.dialect = dialect
        self.url = check_url(url, dialect)
        self.timeout = timeout
        self.max_rows = max_rows
        self._open: dict[str, tuple] = {}
        self._outcomes: dict[tuple[str, str], Outcome] = {}

    def __enter__(self) -> DialectCheck:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for sqlite, server, _ in self._open.values():
            sqlite.close()
            server.close()
        self._open.clear()

    def open(self, schema: Schema) -> tuple | None:
        """(SQLite file, server database, its names), opened once per db_id; None without a SQLite
        file. A server database that cannot be read is a DataError naming it."""
        import sqlalchemy as sa

        from sqltune.db import open_database
        from sqltune.db.urls import for_database, hide_password, scrub

        if not schema.db_path or not Path(schema.db_path).is_file():
            return None
        if schema.db_id not in self._open:
            url = for_database(self.url, schema.db_id)
            server = open_database(url)
            try:
                names = ServerNames.reflect(server.engine)
            except sa.exc.SQLAlchemyError as err:  # most often: the database is not there
                server.close()
                cause = getattr(err, "orig", None) or err
                raise DataError(
                    f"database {schema.db_id} on {hide_password(url)}: {scrub(first_line(cause), url)} "
                    "(load the databases with sqltune db load)"
                ) from None
            if not names.tables:
                server.close()
                raise DataError(
                    f"database {schema.db_id} on {hide_password(url)} has no tables "
                    "(load the databases with sqltune db load)"
                )
            self._open[schema.db_id] = (open_database(schema.db_path), server, names)
        return self._open[schema.db_id]

    def check(self, schema: Schema, sql: str) -> Outcome:
        key = (schema.db_id, sql)
        if key not in self._outcomes:
            self._outcomes[key] = self._check(schema, sql)
        return self._outcomes[key]

    def _check(self, schema: Schema, sql: str) -> Outcome:
        databases = self.open(schema)
        if databases is None:
            return Outcome(None, "SQLite database missing (needed to check)")
        sqlite, server, names = databases
        gold = sqlite.run(sql, CHECK_TIMEOUT, self.max_rows)
        if gold.error == "too many rows":
            return Outcome(None, f"result over {self.max_rows} rows, not compared")
        if not gold.ok:
            return Outcome(None, "gold SQL fails on SQLite", gold.error or "")
        try:
            versions = [
                transpile(sql, self.dialect, names),
                transpile(sql, self.dialect, names, careful=True),
            ]
        except TranspileError as err:
            return Outcome(None, "transpile error", str(err))
        ordered = orders(sql)
        outcome = Outcome(None)
        for careful, version in enumerate(dict.fromkeys(versions)):
            result = server.run(version, self.timeout, self.max_rows)
            if result.error == "timeout":
                return Outcome(None, "timeout", version)
            if result.error == "too many rows":  # more than SQLite's rows, which are fewer than max_rows
                outcome = Outcome(None, "different result", f"row count: {version}")
                continue
            if not result.ok:
                outcome = Outcome(None, f"server error ({error_class(result.error)})", result.error)
                continue
            differs = difference(gold.rows, result.rows, ordered)
            if differs is None:
                return Outcome(version, changed=version != _as_sqlite(sql), careful=bool(careful))
            outcome = Outcome(None, "different result", f"{differs}: {version}")
        if outcome.reason == "different result" and self._ties(schema, sql, ordered):
            outcome.reason = TIES
        return outcome

    def _ties(self, schema: Schema, sql: str, ordered: bool) -> bool:
        """Whether the results agree once every ORDER BY is made total (each output column added as
        a further key): then the gold's ORDER BY ... LIMIT or row order rests on ties, and each engine
        breaks them its own way."""
        sqlite, server, names = self.open(schema)
        total = tie_broken(sql)
        if total is None:
            return False
        gold = sqlite.run(total, CHECK_TIMEOUT, self.max_rows)
        try:
            result = server.run(
                transpile(total, self.dialect, names, careful=True), self.timeout, self.max_rows
            )
        except TranspileError:
            return False
        return gold.ok and result.ok and difference(gold.rows, result.rows, ordered) is None


@functools.cache
def _as_sqlite(sql: str) -> str:
    """The SQLite query as sqlglot writes it, to tell real changes from sqlglot's formatting."""
    import sqlglot

    return sqlglot.parse_one(sql, read="sqlite").sql("sqlite")


def check_url(url: str | None, dialect: str) -> str:
    """The db_url for `dialect`, or a one-line error saying what to give."""
    from sqltune.db.urls import backend, hide_password, is_url

    if not url:
        raise ConfigError(
            f"dialect={dialect} needs db_url=<the server holding the databases, {{db_id}} where the name "
            "goes> to check the transpiled gold SQL (copy them there with sqltune db load)"
        )
    if not is_url(url) or backend(url) != URL_BACKENDS[dialect]:
        raise ConfigError(
            f"db_url: '{hide_password(url)}' is not a {DIALECT_NAMES[dialect]} URL "
            f"({URL_BACKENDS[dialect]}://user@host:port/{{db_id}}), as dialect={dialect} needs"
        )
    return url


# ---- datasets ------------------------------------------------------------------------------------
@dataclass
class DialectReport:
    """What the conversion did, for the summary and the dataset's registry entry."""

    dialect: str
    gold: str  # where the dialect's SQL came from
    checked: int = 0
    kept: int = 0
    changed: int = 0
    careful: int = 0
    skipped: Counter = field(default_factory=Counter)
    db_url: str | None = None  # password hidden
    timeout: float | None = None

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if v is not None}
        data["skipped"] = dict(self.skipped)
        return data


def skip_reason(dialect: str, reason: str) -> str:
    return f"{DIALECT_NAMES[dialect]}: {reason}"


def to_dialect(
    data: SourceData, dialect: str, url: str, strict: bool = False, timeout: float = CHECK_TIMEOUT
) -> tuple[SourceData, DialectReport]:
    """The source's examples with their gold SQL (and earlier turns' SQL) in `dialect`, keeping only
    those whose SQL returns the SQLite result on the server."""
    from tqdm import tqdm

    from sqltune.db.urls import DB_ID, hide_password

    if DB_ID not in url and len({e.db_id for e in data.examples}) > 1:
        raise ConfigError(
            f"db_url: '{hide_password(url)}' names one database, but the examples use "
            f"{len({e.db_id for e in data.examples})}; put {DB_ID} where the database name goes"
        )
    report = DialectReport(
        dialect,
        "transpiled from SQLite by sqlglot, kept when the result on the server matches SQLite's",
        db_url=hide_password(url),
        timeout=timeout,
    )
    skips = Skips(strict)
    examples: list[Example] = []
    with DialectCheck(dialect, url, timeout) as check:
        for db_id in sorted({e.db_id for e in data.examples}):
            check.open(data.schemas[db_id])  # a database missing on the server: stop before starting
        for example in tqdm(data.examples, desc=f"check {dialect}", unit="q", leave=False):
            schema = data.schemas[example.db_id]
            where = f"example {example.id} ({example.db_id}): {example.sql}"
            report.checked += 1
            outcome = check.check(schema, example.sql)
            if outcome.sql is None:
                report.skipped[outcome.reason] += 1
                skips.add(skip_reason(dialect, outcome.reason), f"{where}: {outcome.detail}")
                continue
            history = [(question, check.check(schema, sql)) for question, sql in example.history]
            if any(earlier.sql is None for _, earlier in history):
                report.skipped["an earlier turn's SQL not kept"] += 1
                skips.add(skip_reason(dialect, "an earlier turn's SQL not kept"), where)
                continue
            report.kept += 1
            report.changed += outcome.changed
            report.careful += outcome.careful
            examples.append(
                replace(example, sql=outcome.sql, history=[(q, earlier.sql) for q, earlier in history])
            )
    skipped = Counter(data.skipped)
    skipped.update(skips.counts)
    return replace(data, examples=examples, skipped=skipped), report


def read_in_dialect(
    source: SourceArguments, dialect: str, timeout: float = CHECK_TIMEOUT
) -> tuple[SourceData, DialectReport | None]:
    """Read `source` with its gold SQL in `dialect` (no report for SQLite, the sources' own)."""
    from sqltune.data.sources import read_source

    if dialect == "sqlite":
        if source.db_url:
            raise ConfigError(
                "db_url: only used with dialect=postgres or dialect=mysql (to check the gold SQL)"
            )
        return read_source(source), None
    if source.source == "bird":
        from sqltune.data.sources.bird import dialect_questions, read_bird

        native = dialect_questions(source, dialect)
        if native is not None:
            report = DialectReport(
                dialect,
                f"BIRD mini-dev's own {DIALECT_NAMES[dialect]} SQL ({native.name}), as written: not "
                "transpiled, and not checked by execution (that needs the BIRD databases, as SQLite "
                "files and on the server)",
            )
            data = read_bird(source, dialect)
            report.checked = report.kept = len(data.examples)
            return data, report
    url = check_url(source.db_url, dialect)
    return to_dialect(read_source(source), dialect, url, source.strict, timeout)
