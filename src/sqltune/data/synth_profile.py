"""What the synthesizer knows about a database: each table and column described in words and
classified by the role it can play in a question.

A column is an identifier (a key, or named like one), a number, a date, a category (few distinct
values: good for filters and GROUP BY), free text (many distinct values: names, titles) or long
text (never used). The classification reads the column's actual values, because SQLite types are
only hints (Spider stores many numbers as text and the reverse). Each table also gets a label: the
column that names its rows (`name`, `title`, ...), used whenever a question asks "which ...?".
"""

from __future__ import annotations

import datetime
import decimal
import re
from dataclasses import dataclass, field

from sqltune.data.schema import Schema, natural_name
from sqltune.errors import DataError

SAMPLE_ROWS = 2000  # rows read per column to classify it
MAX_VALUE_CHARS = 40
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_ID_NAME = re.compile(r"(^id$|_id$|Id$|ID$)")
_IRREGULAR = {"person": "people", "child": "children", "man": "men", "woman": "women", "staff": "staff"}


def plural(phrase: str) -> str:
    """'order item' -> 'order items', 'country' -> 'countries', 'date of birth' -> 'dates of birth'."""
    if " of " in phrase:
        head, _, tail = phrase.partition(" of ")
        return f"{plural(head)} of {tail}"
    if not phrase[-1:].isalpha():
        return phrase  # 'ratings (millions)': no safe plural
    head, _, word = phrase.rpartition(" ")
    lowered = word.lower()
    if lowered in _IRREGULAR:
        word = _IRREGULAR[lowered]
    elif lowered in _IRREGULAR.values() or (lowered.endswith("s") and not lowered.endswith("ss")):
        pass  # already plural
    elif re.search(r"[^aeiou]y$", lowered):
        word = word[:-1] + "ies"
    elif re.search(r"(s|x|z|ch|sh)$", lowered):
        word += "es"
    else:
        word += "s"
    return f"{head} {word}" if head else word


def singular(phrase: str) -> str:
    """'order items' -> 'order item', 'countries' -> 'country'."""
    head, _, word = phrase.rpartition(" ")
    lowered = word.lower()
    inverse = {v: k for k, v in _IRREGULAR.items()}
    if lowered in inverse:
        word = inverse[lowered]
    elif lowered.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif re.search(r"(sses|xes|ches|shes)$", lowered):
        word = word[:-2]
    elif lowered.endswith("s") and not re.search(r"(ss|us|is)$", lowered):
        word = word[:-1]
    return f"{head} {word}" if head else word


@dataclass
class ColumnProfile:
    table: str
    name: str
    phrase: str  # the column in words: 'unit price'
    kind: str  # id, number, date, category, text, long
    values: list = field(default_factory=list)  # distinct values, in the order the table holds them


@dataclass
class TableProfile:
    name: str
    singular: str
    plural: str
    rows: int
    columns: list[ColumnProfile]
    label: ColumnProfile | None  # the column that names a row

    def of_kind(self, *kinds: str) -> list[ColumnProfile]:
        return [c for c in self.columns if c.kind in kinds]

    @property
    def describable(self) -> list[ColumnProfile]:
        """Columns a question can ask for: everything but identifiers and long text."""
        return self.of_kind("text", "category", "number", "date")


@dataclass
class Link:
    """A foreign key a join can follow: `child.column` refers to `parent.key`."""

    child: TableProfile
    column: str
    parent: TableProfile
    key: str


@dataclass
class DatabaseProfile:
    db_id: str
    tables: list[TableProfile]
    links: list[Link]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def classify(name: str, keys: set[str], values: list) -> str:
    """The role of a column, from its name, whether it is a key, and its non-null values."""
    if name.lower() in keys or _ID_NAME.search(name):
        return "id"
    distinct = list(dict.fromkeys(values))
    if not distinct:
        return "long"  # empty: nothing to ask about
    if all(_is_number(v) for v in distinct):
        return "number" if len(distinct) > 2 else "long"
    if not all(isinstance(v, str) for v in distinct):
        return "long"
    if sum(len(v) for v in distinct) / len(distinct) > MAX_VALUE_CHARS:
        return "long"
    if all(_DATE.match(v) for v in distinct):
        return "date"
    if len(distinct) <= max(2, min(20, len(values) // 2)):
        return "category"
    return "text"


def _label(columns: list[ColumnProfile]) -> ColumnProfile | None:
    texts = [c for c in columns if c.kind == "text"]
    for words in (("name",), ("title",), ("name", "title", "model", "code")):
        named = [c for c in texts if any(w in c.phrase.split() for w in words)]
        if named:
            return named[0]
    return texts[0] if texts else next((c for c in columns if c.kind == "category"), None)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plain(value: object) -> object:
    """A server's value as SQLite would hold it: decimals as numbers, dates as ISO text."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    return value


def _rows(database, sql: str) -> list[tuple]:
    """Rows of a trusted profiling query written in SQLite's dialect, on any database."""
    result = database.run(in_dialect(sql, database.dialect), timeout=60.0)
    if not result.ok:
        raise DataError(f"cannot read the database's rows ({result.error})")
    return [tuple(plain(v) for v in row) for row in result.rows]


def in_dialect(sql: str, dialect: str) -> str:
    """SQL written for SQLite, as the server's dialect writes it (quoting, LIMIT...)."""
    if dialect == "sqlite":
        return sql
    import sqlglot

    return sqlglot.transpile(sql, read="sqlite", write=dialect)[0]


def profile_database(schema: Schema, database) -> DatabaseProfile:
    """Describe every table of `schema` from its values in `database` (`sqltune.db.open_database`)."""
    key_columns: dict[str, set[str]] = {t.name: set() for t in schema.tables}
    for table in schema.tables:
        for key in table.primary_keys:
            key_columns[table.name].update(c.lower() for c in key)
    for fk in schema.foreign_keys:
        key_columns.setdefault(fk.table, set()).add(fk.column.lower())
        key_columns.setdefault(fk.ref_table, set()).add(fk.ref_column.lower())
    tables = []
    for table in schema.tables:
        rows = _rows(database, f"SELECT count(*) FROM {_quote(table.name)}")[0][0]
        columns = []
        for column in table.columns:
            values = [
                r[0]
                for r in _rows(
                    database,
                    f"SELECT {_quote(column.name)} FROM {_quote(table.name)} "
                    f"WHERE {_quote(column.name)} IS NOT NULL LIMIT {SAMPLE_ROWS}",
                )
            ]
            kind = classify(column.name, key_columns.get(table.name, set()), values)
            distinct = [v for v in dict.fromkeys(values) if not isinstance(v, str) or _usable_text(v)]
            phrase = column.natural_name or natural_name(column.name)
            columns.append(ColumnProfile(table.name, column.name, phrase, kind, distinct[:50]))
        words = table.natural_name or natural_name(table.name)
        tables.append(
            TableProfile(table.name, singular(words), plural(words), rows, columns, _label(columns))
        )
    by_name = {t.name.lower(): t for t in tables}
    links = []
    for fk in schema.foreign_keys:
        child, parent = by_name.get(fk.table.lower()), by_name.get(fk.ref_table.lower())
        if child and parent and child is not parent:
            links.append(Link(child, fk.column, parent, fk.ref_column))
    return DatabaseProfile(
        schema.db_id,
        [t for t in tables if t.rows > 0],
        [link for link in links if link.child.rows > 0 and link.parent.rows > 0],
    )


def _usable_text(value: str) -> bool:
    """A text value a question can quote: short, one line, not blank."""
    return 0 < len(value.strip()) <= MAX_VALUE_CHARS and "\n" not in value and value == value.strip()
