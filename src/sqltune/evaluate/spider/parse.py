"""The official Spider SQL grammar: SQL text -> the nested structure that exact set match compares.

This is the grammar of `process_sql.py` in the official evaluator (test-suite-sql-eval), written anew
as a recursive-descent parser over the tokens of `spider.tokenize`. Exact set match is defined by
this parser's output, including its blind spots, so the grammar is reproduced as it is rather than
as SQL really is. Among them: table aliases need `AS`; a column alias (`AS cnt`) or `<>` makes the
query unparseable; tokens after the end of a query are ignored; a value that is not a number or a
string is read as one column and everything up to the next `,`, `)`, `and` or keyword is skipped;
the LIMIT value is always 1. Any such failure raises `ParseError`; the scorer then compares against
an empty query, as the official evaluator does.

The schema is read from the SQLite file itself (table and column names, lower-cased), not from
tables.json, again like the original.

Shapes (compared with ==, so they must be exactly these):
    ColUnit(agg, column_id, distinct)          column_id like "__singer.name__" or "__all__"
    ValUnit(op, col_unit1, col_unit2 | None)   op: index in UNIT_OPS
    CondUnit(negated, op, val_unit, val1, val2)  values: float, '"text"', ColUnit, Sql or None
    condition: [CondUnit, "and" | "or", CondUnit, ...]   (flat, like the original)
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqltune.evaluate.spider.tokenize import ParseError, tokenize

CLAUSE_KEYWORDS = ("select", "from", "where", "group", "order", "limit", "intersect", "union", "except")
JOIN_KEYWORDS = ("join", "on", "as")
WHERE_OPS = ("not", "between", "=", ">", "<", ">=", "<=", "!=", "in", "like", "is", "exists")
UNIT_OPS = ("none", "-", "+", "*", "/")
AGG_OPS = ("none", "max", "min", "count", "sum", "avg")
COND_OPS = ("and", "or")
SQL_OPS = ("intersect", "union", "except")
ORDER_OPS = ("desc", "asc")


class ColUnit(NamedTuple):
    agg: int
    column: str
    distinct: bool | None


class ValUnit(NamedTuple):
    op: int
    col1: ColUnit
    col2: ColUnit | None


class CondUnit(NamedTuple):
    negated: bool
    op: int
    val_unit: ValUnit
    val1: Any
    val2: Any


@dataclass
class Sql:
    """One parsed query; `order_by` is None or (direction, [ValUnit]); set operations nest."""

    select: tuple[bool | None, list[tuple[int, ValUnit]]] = (False, [])
    table_units: list[tuple[str, Any]] = field(default_factory=list)  # ("table_unit", id) | ("sql", Sql)
    from_conds: list = field(default_factory=list)
    where: list = field(default_factory=list)
    group_by: list[ColUnit] = field(default_factory=list)
    having: list = field(default_factory=list)
    order_by: tuple[str, list[ValUnit]] | None = None
    limit: int | None = None
    intersect: Sql | None = None
    union: Sql | None = None
    except_: Sql | None = None

    def set_operations(self) -> list[Sql | None]:
        """intersect, except, union: the order the official scorer visits them in."""
        return [self.intersect, self.except_, self.union]


class SpiderSchema:
    """Table -> column names of one database, lower-cased, with the official column ids."""

    def __init__(self, tables: dict[str, list[str]]):
        self.tables = tables
        self.ids: dict[str, str] = {"*": "__all__"}
        for table, columns in tables.items():
            for column in columns:
                self.ids[f"{table}.{column}"] = f"__{table}.{column}__"
        for table in tables:
            self.ids[table] = f"__{table}__"

    @classmethod
    def from_sqlite(cls, path: str | Path) -> SpiderSchema:
        from sqltune.db import connect_readonly

        conn = connect_readonly(path, authorizer=False)  # our own schema queries
        try:
            names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            tables = {}
            for name in names:
                # The pragma function form is a plain SELECT, so the read-only authorizer allows it.
                info = conn.execute("SELECT name FROM pragma_table_info(?)", (name,)).fetchall()
                tables[str(name).lower()] = [str(row[0]).lower() for row in info]
        except sqlite3.Error as err:
            from sqltune.errors import DataError

            raise DataError(f"{path}: cannot read the schema: {err}") from None
        finally:
            conn.close()
        return cls(tables)

    def column_ids_of(self, table_ids: list[str]) -> set[str]:
        """Ids of every column of the given tables (the columns foreign-key mapping may touch)."""
        prefixes = {table_id[:-2] for table_id in table_ids}
        return {cid for cid in self.ids.values() if "." in cid and cid[: cid.index(".")] in prefixes}


class _Parser:
    def __init__(self, tokens: list[str], schema: SpiderSchema, aliases: dict[str, str] | None = None):
        self.toks = tokens
        self.schema = schema
        self.aliases = self._aliases() if aliases is None else aliases

    # -- helpers ---------------------------------------------------------------------------------
    def tok(self, i: int) -> str:
        if i >= len(self.toks):
            raise ParseError("unexpected end of query")
        return self.toks[i]

    def at(self, i: int, *options: str) -> bool:
        return i < len(self.toks) and self.toks[i] in options

    def expect(self, i: int, token: str) -> int:
        if self.tok(i) != token:
            raise ParseError(f"expected {token!r} at token {i}, got {self.toks[i]!r}")
        return i + 1

    def _aliases(self) -> dict[str, str]:
        """Every `X AS Y` in the whole query makes Y name X; a table's own name names itself."""
        aliases: dict[str, str] = {}
        for i, token in enumerate(self.toks):
            if token == "as":
                if i + 1 >= len(self.toks):
                    raise ParseError("AS at the end of the query")
                aliases[self.toks[i + 1]] = self.toks[i - 1]
        for table in self.schema.tables:
            if table in aliases:
                raise ParseError(f"alias {table!r} is also a table name")
            aliases[table] = table
        return aliases

    def _terminates(self, i: int) -> bool:
        return self.at(i, *CLAUSE_KEYWORDS, ")", ";")

    # -- columns and values ----------------------------------------------------------------------
    def column(self, i: int, default_tables: list[str] | None) -> tuple[int, str]:
        token = self.tok(i)
        if token == "*":
            return i + 1, self.schema.ids["*"]
        if "." in token:
            parts = token.split(".")
            if len(parts) != 2 or parts[0] not in self.aliases:
                raise ParseError(f"unknown column {token!r}")
            key = f"{self.aliases[parts[0]]}.{parts[1]}"
            if key not in self.schema.ids:
                raise ParseError(f"unknown column {token!r}")
            return i + 1, self.schema.ids[key]
        if not default_tables:
            raise ParseError("column outside any FROM")
        for name in default_tables:
            table = self.aliases[name]  # a KeyError here is a parse error (see parse_sql)
            if token in self.schema.tables[table]:
                return i + 1, self.schema.ids[f"{table}.{token}"]
        raise ParseError(f"unknown column {token!r}")

    def col_unit(self, i: int, default_tables: list[str] | None) -> tuple[int, ColUnit]:
        block = self.tok(i) == "("
        if block:
            i += 1
        if self.tok(i) in AGG_OPS:
            agg = AGG_OPS.index(self.toks[i])
            i = self.expect(i + 1, "(")
            distinct = self.tok(i) == "distinct"
            if distinct:
                i += 1
            i, column = self.column(i, default_tables)
            i = self.expect(i, ")")
            return i, ColUnit(agg, column, distinct)  # the opening block paren is left unread
        distinct = self.tok(i) == "distinct"
        if distinct:
            i += 1
        i, column = self.column(i, default_tables)
        if block:
            i = self.expect(i, ")")
        return i, ColUnit(0, column, distinct)

    def val_unit(self, i: int, default_tables: list[str] | None) -> tuple[int, ValUnit]:
        block = self.tok(i) == "("
        if block:
            i += 1
        i, col1 = self.col_unit(i, default_tables)
        op, col2 = 0, None
        if self.at(i, *UNIT_OPS):
            op = UNIT_OPS.index(self.toks[i])
            i, col2 = self.col_unit(i + 1, default_tables)
        if block:
            i = self.expect(i, ")")
        return i, ValUnit(op, col1, col2)

    def value(self, i: int, default_tables: list[str] | None) -> tuple[int, Any]:
        start = i
        block = self.tok(i) == "("
        if block:
            i += 1
        token = self.tok(i)
        if token == "select":
            i, val = self.sql(i)
        elif '"' in token:
            val, i = token, i + 1
        else:
            try:
                val, i = float(token), i + 1
            except ValueError:
                # A column; everything up to the next stop token is skipped (the original's rule).
                end = i
                while end < len(self.toks) and not (
                    self.toks[end] in (",", ")", "and") or self.at(end, *CLAUSE_KEYWORDS, *JOIN_KEYWORDS)
                ):
                    end += 1
                sub = _Parser(self.toks[start:end], self.schema, self.aliases)
                _, val = sub.col_unit(0, default_tables)
                i = end
        if block:
            i = self.expect(i, ")")
        return i, val

    def condition(self, i: int, default_tables: list[str] | None) -> tuple[int, list]:
        conds: list = []
        while i < len(self.toks):
            i, val_unit = self.val_unit(i, default_tables)
            negated = self.tok(i) == "not"
            if negated:
                i += 1
            if not self.at(i, *WHERE_OPS):
                raise ParseError(f"expected a comparison at token {i}")
            op = WHERE_OPS.index(self.toks[i])
            i += 1
            i, val1 = self.value(i, default_tables)
            val2 = None
            if op == WHERE_OPS.index("between"):
                i = self.expect(i, "and")
                i, val2 = self.value(i, default_tables)
            conds.append(CondUnit(negated, op, val_unit, val1, val2))
            if self._terminates(i) or self.at(i, *JOIN_KEYWORDS):
                break
            if self.at(i, *COND_OPS):
                conds.append(self.toks[i])
                i += 1
        return i, conds

    # -- clauses -----------------------------------------------------------------------------------
    def select(self, i: int, default_tables: list[str]) -> tuple[bool, list[tuple[int, ValUnit]]]:
        i = self.expect(i, "select")
        distinct = self.at(i, "distinct")
        if distinct:
            i += 1
        units = []
        while i < len(self.toks) and self.toks[i] not in CLAUSE_KEYWORDS:
            agg = 0
            if self.toks[i] in AGG_OPS:
                agg = AGG_OPS.index(self.toks[i])
                i += 1
            i, unit = self.val_unit(i, default_tables)
            units.append((agg, unit))
            if self.at(i, ","):
                i += 1
        return distinct, units

    def from_clause(self, start: int) -> tuple[int, list, list, list[str]]:
        if "from" not in self.toks[start:]:
            raise ParseError("no FROM")
        i = self.toks.index("from", start) + 1
        table_units: list = []
        conds: list = []
        default_tables: list[str] = []
        while i < len(self.toks):
            block = self.tok(i) == "("
            if block:
                i += 1
            if self.tok(i) == "select":
                i, sub = self.sql(i)
                table_units.append(("sql", sub))
            else:
                if self.at(i, "join"):
                    i += 1
                token = self.tok(i)
                if token not in self.aliases or self.aliases[token] not in self.schema.ids:
                    raise ParseError(f"unknown table {token!r}")
                table = self.aliases[token]
                i += 3 if self.at(i + 1, "as") else 1
                table_units.append(("table_unit", self.schema.ids[table]))
                default_tables.append(table)
            if self.at(i, "on"):
                i, more = self.condition(i + 1, default_tables)
                if conds:
                    conds.append("and")
                conds.extend(more)
            if block:
                i = self.expect(i, ")")
            if self._terminates(i):
                break
        return i, table_units, conds, default_tables

    def group_by(self, i: int, default_tables: list[str]) -> tuple[int, list[ColUnit]]:
        units: list[ColUnit] = []
        if not self.at(i, "group"):
            return i, units
        i = self.expect(i + 1, "by")
        while i < len(self.toks) and not self._terminates(i):
            i, unit = self.col_unit(i, default_tables)
            units.append(unit)
            if not self.at(i, ","):
                break
            i += 1
        return i, units

    def order_by(self, i: int, default_tables: list[str]) -> tuple[int, tuple[str, list] | None]:
        if not self.at(i, "order"):
            return i, None
        i = self.expect(i + 1, "by")
        direction, units = "asc", []
        while i < len(self.toks) and not self._terminates(i):
            i, unit = self.val_unit(i, default_tables)
            units.append(unit)
            if self.at(i, *ORDER_OPS):
                direction = self.toks[i]  # the last direction given wins
                i += 1
            if not self.at(i, ","):
                break
            i += 1
        return i, (direction, units)

    def sql(self, start: int) -> tuple[int, Sql]:
        i = start
        block = self.tok(i) == "("
        if block:
            i += 1
        end, table_units, from_conds, default_tables = self.from_clause(start)
        query = Sql(select=self.select(i, default_tables), table_units=table_units, from_conds=from_conds)
        i = end
        if self.at(i, "where"):
            i, query.where = self.condition(i + 1, default_tables)
        i, query.group_by = self.group_by(i, default_tables)
        if self.at(i, "having"):
            i, query.having = self.condition(i + 1, default_tables)
        i, query.order_by = self.order_by(i, default_tables)
        if self.at(i, "limit"):
            self.tok(i + 1)  # a value must follow; whatever it is, the official parser records 1
            i, query.limit = i + 2, 1
        i = self._skip_semicolons(i)
        if block:
            i = self._skip_semicolons(self.expect(i, ")"))
        if self.at(i, *SQL_OPS):
            operation = self.toks[i]
            i, nested = self.sql(i + 1)
            setattr(query, "except_" if operation == "except" else operation, nested)
        return i, query

    def _skip_semicolons(self, i: int) -> int:
        while self.at(i, ";"):
            i += 1
        return i


def parse_sql(sql: str, schema: SpiderSchema) -> Sql:
    """Parse one query; raises ParseError wherever the official parser would raise."""
    try:
        parser = _Parser(tokenize(sql), schema)
        return parser.sql(0)[1]
    except (KeyError, IndexError) as err:  # a name the grammar looked up and did not find
        raise ParseError(f"cannot parse: {type(err).__name__} {err}") from None
    except RecursionError:
        raise ParseError("nested too deeply") from None
