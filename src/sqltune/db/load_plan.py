"""What a SQLite database becomes on a server, decided before anything is written: the tables as
SQLAlchemy reflects them, what each column really stores, the server type chosen for it, and the
keys that can hold there. `sqltune.db.load` explains the rules and writes the result.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Any

INT32 = (-(2**31), 2**31 - 1)
EARLIEST_DATE = "1000-01-01"  # MySQL's DATE and DATETIME start at year 1000
MYSQL_KEY_BYTES = 3072  # InnoDB's longest index key; utf8mb4 takes up to 4 bytes a character
MYSQL_ROW_BYTES = 65535  # MySQL's limit on a row's VARCHAR columns together
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# The kinds of change a report lists.
TYPE_UNKNOWN = "type not known"
AS_TEXT = "loaded as text"
AS_NUMBER = "loaded as number"
WIDENED = "widened"
KEY_DROPPED = "key dropped"
FK_SKIPPED = "foreign key skipped"
VALUE_CHANGED = "value changed"


@dataclass
class Change:
    """One thing the server database does differently from the SQLite file."""

    kind: str
    table: str
    column: str | None
    detail: str

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}" if self.column else self.table


@dataclass
class Profile:
    """What SQLite really stores in one column (its declared type promises nothing)."""

    integers: int = 0
    reals: int = 0
    texts: int = 0
    blobs: int = 0
    smallest: int | None = None  # of the integers and the integer-like texts
    largest: int | None = None
    longest: int = 0  # characters of text (bytes of blobs)
    dates: int = 0  # text values that are a valid YYYY-MM-DD
    datetimes: int = 0  # ... YYYY-MM-DD HH:MM:SS
    times: int = 0  # ... HH:MM:SS
    earliest: str | None = None  # the smallest text value
    odd: str | None = None  # a text value that is none of the above
    infinite: int = 0
    integer_texts: int = 0  # text values that are integers as SQLite writes them ('12', not '012')

    @property
    def values(self) -> int:
        return self.integers + self.reals + self.texts + self.blobs


PROFILE_FIELDS = len(fields(Profile))


@dataclass
class ColumnPlan:
    name: str  # as in SQLite
    declared: str  # the declared type, as written
    family: str  # what the declared type means: integer, boolean, real, numeric, text, blob, date...
    length: int | None  # declared length of CHAR/VARCHAR(n)
    nullable: bool
    profile: Profile
    kind: str = "text"  # on the server: integer, bigint, double, text, binary, date, datetime, time
    key_length: int | None = None  # MySQL: VARCHAR(n) of a column in a key

    @property
    def server_name(self) -> str:
        return server_name(self.name)


@dataclass
class ForeignKeyPlan:
    columns: list[str]
    parent: str  # table as named in the SQLite schema
    parent_columns: list[str]


@dataclass
class TablePlan:
    name: str
    rows: int
    columns: list[ColumnPlan]
    primary_key: list[str]
    uniques: list[list[str]]
    foreign_keys: list[ForeignKeyPlan]

    def column(self, name: str) -> ColumnPlan | None:
        return next((c for c in self.columns if c.server_name == server_name(name)), None)


def server_name(name: str) -> str:
    """A table or column name as created on the server: lower case, ASCII letters only (the case
    folding SQLite and PostgreSQL apply to unquoted names)."""
    return name.translate(ASCII_LOWER)


def _family(coltype: Any) -> str:
    import sqlalchemy as sa

    for cls, name in (
        (sa.Boolean, "boolean"), (sa.Integer, "integer"), (sa.Float, "real"), (sa.Numeric, "numeric"),
        (sa.DateTime, "datetime"), (sa.Date, "date"), (sa.Time, "time"), (sa.LargeBinary, "blob"),
    ):  # fmt: skip
        if isinstance(coltype, cls):
            return name
    return "none" if isinstance(coltype, sa.types.NullType) else "text"


def _profile_sql(table: str, columns: list[str]) -> str:
    parts = ["count(*)"]
    for name in columns:
        c = quote_name(name)
        is_text = f"typeof({c}) = 'text'"
        integer_like = f"({is_text} AND CAST(CAST({c} AS INTEGER) AS TEXT) IS {c})"
        parts += [
            *(
                f"count(CASE WHEN typeof({c}) = '{t}' THEN 1 END)"
                for t in ("integer", "real", "text", "blob")
            ),
            f"min(CASE WHEN typeof({c}) = 'integer' OR {integer_like} THEN CAST({c} AS INTEGER) END)",
            f"max(CASE WHEN typeof({c}) = 'integer' OR {integer_like} THEN CAST({c} AS INTEGER) END)",
            f"max(length({c}))",
            *(
                f"count(CASE WHEN {is_text} AND {f}({c}) IS {c} THEN 1 END)"
                for f in ("date", "datetime", "time")
            ),
            f"min(CASE WHEN {is_text} THEN {c} END)",
            f"min(CASE WHEN {is_text} AND date({c}) IS NOT {c} AND datetime({c}) IS NOT {c} "
            f"AND time({c}) IS NOT {c} THEN {c} END)",
            f"count(CASE WHEN typeof({c}) = 'real' AND abs({c}) > 1.7976931348623157e308 THEN 1 END)",
            f"count(CASE WHEN {integer_like} THEN 1 END)",
        ]
    return f"SELECT {', '.join(parts)} FROM {quote_name(table)}"


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_plans(sqlite_conn) -> list[TablePlan]:
    """Reflect every table of the SQLite file and profile its columns' values."""
    import sqlalchemy as sa

    inspector = sa.inspect(sqlite_conn)
    plans = []
    for table in inspector.get_table_names():
        with warnings.catch_warnings():  # INTEGER(11) and the like: the arguments are not needed
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            columns = inspector.get_columns(table)
            primary_key = inspector.get_pk_constraint(table)["constrained_columns"] or []
            foreign_keys = inspector.get_foreign_keys(table)
            uniques = [u["column_names"] for u in inspector.get_unique_constraints(table)]
            uniques += [
                i["column_names"]
                for i in inspector.get_indexes(table)
                if i.get("unique") and None not in i["column_names"] and i["column_names"] not in uniques
            ]
        info = sqlite_conn.exec_driver_sql(f"PRAGMA table_info({quote_name(table)})").all()
        declared_types = {row[1]: row[2] for row in info}
        names = [c["name"] for c in columns]
        counts = list(sqlite_conn.exec_driver_sql(_profile_sql(table, names)).one())
        rows, stats = counts[0], counts[1:]
        plan = TablePlan(table, rows, [], list(primary_key), uniques, [])
        for i, column in enumerate(columns):
            profile = Profile(*stats[i * PROFILE_FIELDS : (i + 1) * PROFILE_FIELDS])
            profile.longest = profile.longest or 0
            coltype = column["type"]
            plan.columns.append(
                ColumnPlan(
                    column["name"],
                    declared_types.get(column["name"], ""),
                    _family(coltype),
                    getattr(coltype, "length", None) if isinstance(coltype, sa.String) else None,
                    bool(column["nullable"]),
                    profile,
                )
            )
        for fk in foreign_keys:
            plan.foreign_keys.append(
                ForeignKeyPlan(
                    list(fk["constrained_columns"]), fk["referred_table"], list(fk["referred_columns"] or [])
                )
            )
        plans.append(plan)
    return plans


# --- choosing the server's types ----------------------------------------------------------------------
def plan_types(plans: list[TablePlan], mysql: bool) -> list[Change]:
    """Choose every column's server type; return the changes, a declared type SQLAlchemy does not
    know as one line per type (Spider's sakila_1 declares 28 columns SMALLINT UNSIGNED)."""
    from sqlalchemy.dialects.sqlite.base import ischema_names

    changes: list[Change] = []
    unknown: dict[str, tuple[str, list[str]]] = {}  # type -> (SQLite's reading, columns)
    for plan in plans:
        for column in plan.columns:
            base = column.declared.split("(")[0].strip().upper()
            if base not in ischema_names:
                unknown.setdefault(base, (column.family, []))[1].append(f"{plan.name}.{column.name}")
            changes += [Change(kind, plan.name, column.name, why) for kind, why in choose_kind(column, mysql)]
    for base, (family, where) in unknown.items():
        what = f"'{base}' is no SQL type SQLAlchemy knows" if base else "no declared type"
        how = "typed by its values" if family == "none" else f"read as {family} (SQLite's affinity rules)"
        listed = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        changes.append(Change(TYPE_UNKNOWN, listed, None, f"{what}: {how}"))
    return changes


def choose_kind(column: ColumnPlan, mysql: bool) -> list[tuple[str, str]]:
    """Set `column.kind` from its declared type and its values; return the changes to report."""
    p, family, declared = column.profile, column.family, column.declared or "untyped"
    changes = []
    numbers = p.integers + p.reals
    if p.blobs:
        if p.blobs == p.values and family in ("blob", "none"):
            column.kind = "binary"
        else:
            column.kind = "text"
            changes.append((AS_TEXT, f"{p.blobs} blob(s) in a {declared} column: decoded as UTF-8 text"))
    elif p.texts and family in ("date", "datetime", "time") and not numbers:
        kind = _date_kind(p)
        column.kind = kind or "text"
        if kind is None and p.odd is not None:
            changes.append((AS_TEXT, f"{declared} values not as YYYY-MM-DD[ HH:MM:SS], e.g. {p.odd!r}"))
        elif kind is None and (p.earliest or "") < EARLIEST_DATE:
            changes.append((AS_TEXT, f"{declared} values before {EARLIEST_DATE}, e.g. {p.earliest!r}"))
        elif kind is None:
            changes.append((AS_TEXT, f"{declared} values mixing dates and date-times"))
    elif p.texts:
        column.kind = "text"
        if family not in ("text", "none", "blob"):
            example = p.odd if p.odd is not None else p.earliest
            changes.append((AS_TEXT, f"{p.texts} text value(s) in a {declared} column, e.g. {example!r}"))
        elif family == "blob":
            changes.append((AS_TEXT, f"a {declared} column holding text"))
        elif numbers:
            changes.append((AS_TEXT, f"{numbers} number(s) in a text column: loaded as their text"))
    elif numbers:
        if family == "text":
            column.kind = "text"
            changes.append((AS_TEXT, f"{numbers} number(s) in a {declared} column: loaded as their text"))
        elif p.infinite and mysql:
            column.kind = "text"
            changes.append((AS_TEXT, f"{p.infinite} infinite value(s): MySQL's DOUBLE has no infinity"))
        elif p.reals or family == "real":
            column.kind = "double"
            if family in ("integer", "boolean", "date", "datetime", "time"):
                changes.append((AS_NUMBER, f"{p.reals} non-integer value(s) in a {declared} column: double"))
        else:
            column.kind = _integer_kind(p)
            if family in ("date", "datetime", "time"):
                changes.append((AS_NUMBER, f"{declared} column holding integers: loaded as integer"))
    else:  # only NULLs: the declared type decides
        column.kind = {"integer": "integer", "boolean": "integer", "real": "double", "blob": "binary"}.get(
            family, family if family in ("date", "datetime", "time") else "text"
        )
        if family == "numeric":
            column.kind = (
                "integer" if "," not in declared or declared.replace(" ", "").endswith(",0)") else "double"
            )
    if column.kind == "text" and column.length is not None and p.longest > column.length:
        changes.append((WIDENED, f"{declared} holds values of up to {p.longest} characters"))
        column.length = None
    if column.kind != "text":
        column.length = None
    return changes


def _date_kind(p: Profile) -> str | None:
    if p.earliest is not None and p.times == p.texts:
        return "time"
    if p.earliest is None or p.earliest < EARLIEST_DATE:
        return None
    return "date" if p.dates == p.texts else "datetime" if p.datetimes == p.texts else None


def _integer_kind(p: Profile) -> str:
    low, high = INT32
    return "integer" if (p.smallest or 0) >= low and (p.largest or 0) <= high else "bigint"


def plan_keys(plans: list[TablePlan], mysql: bool, sqlite_conn) -> list[Change]:
    """Drop keys that cannot hold on the server, keep the foreign keys that can, size MySQL's key
    columns; return the changes."""
    changes: list[Change] = []
    by_name = {server_name(p.name): p for p in plans}
    for plan in plans:
        why = _key_problem(plan, plan.primary_key, mysql, primary=True)
        if why:
            changes.append(
                Change(KEY_DROPPED, plan.name, None, f"primary key ({', '.join(plan.primary_key)}) {why}")
            )
            plan.primary_key = []
        kept = []
        for unique in plan.uniques:
            why = _key_problem(plan, unique, mysql)
            if why:
                changes.append(Change(KEY_DROPPED, plan.name, None, f"unique ({', '.join(unique)}) {why}"))
            else:
                kept.append(unique)
        plan.uniques = kept
    for plan in plans:
        kept_fks = []
        for fk in plan.foreign_keys:
            why = _foreign_key_problem(plan, fk, by_name, mysql, sqlite_conn, changes)
            target = f"({', '.join(fk.columns)}) -> {fk.parent}({', '.join(fk.parent_columns)})"
            if why:
                changes.append(Change(FK_SKIPPED, plan.name, None, f"{target}: {why}"))
            else:
                kept_fks.append(fk)
        plan.foreign_keys = kept_fks
    if mysql:
        for plan in plans:
            keyed = {server_name(n) for key in [plan.primary_key, *plan.uniques] for n in key}
            keyed |= {server_name(n) for fk in plan.foreign_keys for n in fk.columns}
            for other in plans:
                for fk in other.foreign_keys:
                    if server_name(fk.parent) == server_name(plan.name):
                        keyed |= {server_name(n) for n in fk.parent_columns}
            for column in plan.columns:
                if column.server_name in keyed and column.kind == "text":
                    column.key_length = max(column.length or 0, column.profile.longest, 1)
    return changes


def _key_problem(plan: TablePlan, key: list[str], mysql: bool, primary: bool = False) -> str | None:
    if not key:
        return None
    columns = [plan.column(name) for name in key]
    if None in columns:
        return "names a column the table does not have"
    if primary and any(c.profile.values < plan.rows for c in columns):
        return "has NULLs (SQLite allows them in a primary key, servers do not)"
    if mysql and any(c.kind == "binary" for c in columns):
        return "is a blob, which MySQL cannot index whole"
    if mysql and _mysql_key_bytes(columns) > MYSQL_KEY_BYTES:
        return f"is longer than MySQL's {MYSQL_KEY_BYTES}-byte index limit"
    return None


def _mysql_key_bytes(columns: list[ColumnPlan]) -> int:
    return sum(4 * max(c.length or 0, c.profile.longest, 1) if c.kind == "text" else 8 for c in columns)


def _foreign_key_problem(
    plan: TablePlan,
    fk: ForeignKeyPlan,
    by_name: dict[str, TablePlan],
    mysql: bool,
    sqlite_conn,
    changes: list[Change],
) -> str | None:
    parent = by_name.get(server_name(fk.parent))
    if parent is None:
        return f"there is no table {fk.parent}"
    fk.parent = parent.name
    if not fk.parent_columns:
        fk.parent_columns = list(parent.primary_key)
    if len(fk.parent_columns) != len(fk.columns):
        return "the parent has no primary key of as many columns"
    children = [plan.column(n) for n in fk.columns]
    parents = [parent.column(n) for n in fk.parent_columns]
    missing = [
        n for n, c in zip(fk.columns + fk.parent_columns, children + parents, strict=True) if c is None
    ]
    if missing:
        return f"no column {missing[0]}"
    for child, mother in zip(children, parents, strict=True):  # first: joins need it, key or not
        why = _same_type(plan, child, parent, mother, changes)
        if why:
            return why
    names = {server_name(n) for n in fk.parent_columns}
    keys = [parent.primary_key, *parent.uniques]
    if not any(names == {server_name(n) for n in key} for key in keys):
        return f"{', '.join(fk.parent_columns)} is not a primary key or unique in {parent.name}"
    if mysql and _mysql_key_bytes(children) > MYSQL_KEY_BYTES:
        return f"longer than MySQL's {MYSQL_KEY_BYTES}-byte index limit"
    return _dangling(plan, fk, sqlite_conn)


def _same_type(
    plan: TablePlan, child: ColumnPlan, parent: TablePlan, mother: ColumnPlan, changes: list[Change]
) -> str | None:
    """Give a foreign key column and its parent column one type, or say why they cannot have one.

    Spider declares some foreign keys TEXT that point at INTEGER keys and hold '1', '2'...; SQLite
    joins them as numbers (a comparison with an INTEGER column converts the text), the servers would
    refuse `text = integer`. Such a side becomes an integer when every value it holds is one."""
    integers = {"integer", "bigint"}
    ends = ((child, plan.name, mother, parent.name), (mother, parent.name, child, plan.name))
    for side, table, other, other_table in ends:
        p = side.profile
        numeric = other.kind in integers or other.kind == "double"
        if side.kind == "text" and numeric and p.integer_texts + p.integers == p.values:
            side.kind, side.length = _integer_kind(p) if other.kind in integers else "double", None
            joins = f"{other_table}.{other.name} ({other.kind})"
            changes.append(
                Change(AS_NUMBER, table, side.name, f"integers as text, joining {joins}: {side.kind}")
            )
    if {child.kind, mother.kind} <= integers:
        if child.kind != mother.kind:
            child.kind = mother.kind = "bigint"
        return None
    if child.kind != mother.kind:
        return f"types differ: {child.name} is {child.kind}, {parent.name}.{mother.name} is {mother.kind}"
    return None


def _dangling(plan: TablePlan, fk: ForeignKeyPlan, sqlite_conn) -> str | None:
    """Rows whose foreign key values have no parent row (SQLite does not check), counted in SQLite."""
    present = " AND ".join(f"c.{quote_name(n)} IS NOT NULL" for n in fk.columns)
    match = " AND ".join(
        f"p.{quote_name(pn)} = c.{quote_name(n)}" for n, pn in zip(fk.columns, fk.parent_columns, strict=True)
    )
    sql = (
        f"SELECT count(*), min(c.{quote_name(fk.columns[0])}) FROM {quote_name(plan.name)} AS c "
        f"WHERE {present} AND NOT EXISTS (SELECT 1 FROM {quote_name(fk.parent)} AS p WHERE {match})"
    )
    count, example = sqlite_conn.exec_driver_sql(sql).one()
    return f"{count} row(s) with no parent row (e.g. {example!r})" if count else None


def fit_mysql_row(plan: TablePlan) -> None:
    """MySQL counts every VARCHAR's full width against a 65,535-byte row: turn the widest non-key
    VARCHARs into TEXT (stored off the row) until the table fits."""
    wide = sorted(
        (c for c in plan.columns if c.kind == "text" and not c.key_length and c.length),
        key=lambda c: -(c.length or 0),
    )
    varchars = [4 * (c.key_length or c.length or 0) + 2 for c in plan.columns if c.kind == "text"]
    total = sum(varchars) + 8 * len(plan.columns)
    for column in wide:
        if total < MYSQL_ROW_BYTES:
            break
        total -= 4 * (column.length or 0)
        column.length = None
