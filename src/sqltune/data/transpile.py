"""SQLite SQL in PostgreSQL or MySQL: sqlglot's transpiler, and what it cannot know without the database.

sqlglot translates the syntax (functions, `||`, `IFNULL`, `strftime`, quoting styles). What it
cannot see is the database the SQL runs on, so with the server's tables, columns and column types
(`ServerNames`, read by reflection) a few rules of SQLite's are applied to the syntax tree first:

* Names. SQLite reads `"France"` as a string when no column is called France (Spider relies on
  this), so a double-quoted name that is no table, column or alias becomes a string literal.
  Tables and columns are spelled as the server has them, found case-insensitively, and quoted only
  where the dialect needs it: `sqltune db load` creates lower-case names, PostgreSQL folds unquoted
  names to lower case (so `T1.Singer_ID` stays as written there), MySQL on Linux compares table
  names and aliases case-sensitively (so `FROM Singer AS T1 ... t1.name` becomes `singer`, `T1`).
* Types. SQLite compares a text column with a number as text (`year = 2014` is `year = '2014'`:
  the number takes the column's TEXT affinity); PostgreSQL refuses `text = integer` and MySQL
  compares as numbers, so such literals become strings. PostgreSQL has no AVG or SUM of text,
  which SQLite reads as numbers: the column is cast to DOUBLE PRECISION.
* Shapes. A derived table gets the alias both servers require; MySQL/MariaDB refuse `LIMIT` in an
  `IN (...)` subquery, which is wrapped in a derived table.

Two versions come out. The plain one is what a person writes in the dialect: sqlglot keeps SQLite's
behaviour with NULLs and zero divisors by writing `NULLS FIRST`/`LAST` on every ORDER BY and
`NULLIF(x, 0)` on every divisor, which matters only where such values occur, so the plain version
leaves them out. The careful one keeps them, makes LIKE ignore case as SQLite's does (ILIKE; MySQL:
LOWER on both sides, as the tables `db load` makes compare text in binary), and on PostgreSQL adds
to GROUP BY the columns a grouped query selects outside any aggregate (PostgreSQL refuses them
unless they depend on a grouped primary key; where they do not depend on the group, SQLite picked
an arbitrary row and the results differ). `sqltune.data.dialect` keeps the first version that
returns SQLite's result on the server.

Prompts use `identifier` and `column_type` to write a schema the way the loaded database has it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field


class TranspileError(Exception):
    """sqlglot could not read the SQLite query or write it in the dialect."""


# ---- names and types -----------------------------------------------------------------------------
@functools.cache
def _preparer(dialect: str):
    """SQLAlchemy's identifier preparer of the dialect: it knows the reserved words and legal names."""
    if dialect == "postgres":
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect().identifier_preparer
    from sqlalchemy.dialects import mysql

    return mysql.dialect().identifier_preparer


def needs_quotes(name: str, dialect: str) -> bool:
    """Whether `name` must be quoted to mean itself: a reserved word, an odd character, and on
    PostgreSQL any capital letter (unquoted names fold to lower case there; MySQL keeps them)."""
    if dialect == "postgres":
        return _preparer(dialect).quote(name) != name
    lower = name.lower()
    return _preparer("mysql").quote(lower) != lower


def identifier(name: str, dialect: str, table: bool = False) -> str:
    """A SQLite table or column name as a prompt writes it in `dialect`, for the database `sqltune
    db load` made (every name in lower case): as written where the server finds it so (PostgreSQL
    folds unquoted names; MySQL ignores the case of column names, not of table names), quoted in
    lower case where it needs quotes."""
    from sqltune.db.load import server_name

    loaded = server_name(name)
    if needs_quotes(loaded, dialect):
        return _preparer(dialect).quote_identifier(loaded)
    return loaded if table and dialect == "mysql" else name


# `db load` reads a declared type by SQLite's affinity rules, then by the values. Without the values,
# a prompt shows what the declared type alone gives: (pattern, upper case; type, None: as declared).
_TYPE_FAMILIES = (
    (r"INT|BOOL", "INTEGER"),  # BOOLEAN columns hold 0/1 and are loaded as integers
    (r"^(N?VAR)?CHAR(ACTER)?( VARYING)?\s*\(\s*\d+\s*\)$", None),  # keeps (n)
    (r"CHAR|CLOB|TEXT", "TEXT"),
    (r"BLOB|BINARY", "BLOB"),
    (r"REAL|FLOA|DOUB", "DOUBLE"),
    (r"DATETIME|TIMESTAMP", "TIMESTAMP"),
    (r"DATE", "DATE"),
    (r"^(DEC|NUMERIC|NUMBER).*,\s*[1-9]", "DOUBLE"),  # with decimals: SQLite computes with doubles
)


@functools.cache
def column_type(declared: str, dialect: str) -> str:
    """A column's declared SQLite type (or Spider's and BIRD's coarse one) as `dialect` spells the
    type `sqltune db load` gives it: other numeric types hold integers (SQLite's NUMERIC affinity),
    Spider's `time` and `others` hold text."""
    if dialect == "sqlite" or not declared:
        return declared
    from sqlglot import exp

    text = declared.strip().upper()
    chosen = "TEXT" if text in ("TIME", "OTHERS") else "INTEGER"
    for pattern, family in _TYPE_FAMILIES:
        if re.search(pattern, text):
            chosen = family or re.sub(r"^N?VARCHAR|^CHARACTER VARYING|^N?CHAR(ACTER)?", "VARCHAR", text)
            break
    if chosen == "BLOB":
        return "BYTEA" if dialect == "postgres" else "BLOB"
    return exp.DataType.build(chosen, dialect="sqlite").sql(dialect)


@dataclass
class ServerNames:
    """The tables and columns of one server database, by lower-case name, with each column's kind
    (text or other): Spider's SQL spells names in any case and relies on SQLite's typing."""

    tables: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str | None] = field(default_factory=dict)  # None: two spellings, left alone
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, column) -> kind

    @classmethod
    def reflect(cls, engine) -> ServerNames:
        import sqlalchemy as sa

        names = cls()
        for (_, table), columns in sa.inspect(engine).get_multi_columns().items():
            names.tables[table.lower()] = table
            for column in columns:
                name = column["name"]
                if names.columns.setdefault(name.lower(), name) not in (None, name):
                    names.columns[name.lower()] = None
                kind = "text" if isinstance(column["type"], sa.String) else "other"
                names.kinds[table.lower(), name.lower()] = kind
        return names

    def known(self, lowered: str) -> bool:
        return lowered in self.tables or lowered in self.columns


# ---- transpiling ---------------------------------------------------------------------------------
def transpile(sql: str, dialect: str, names: ServerNames | None = None, careful: bool = False) -> str:
    """`sql` (SQLite) in `dialect`; with `names` (the server's tables and columns) the name and type
    rules of the module docstring apply, `careful` gives the careful version."""
    import sqlglot
    from sqlglot.errors import ErrorLevel, SqlglotError, UnsupportedError

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except (SqlglotError, RecursionError) as err:
        raise TranspileError(f"sqlglot cannot read it: {first_line(err)}") from None
    if names is not None:
        _strings_for_unknown_names(tree, names)
        _text_affinity(tree, names, dialect)
        _server_spelling(tree, names, dialect)
    _alias_derived_tables(tree)
    if dialect == "mysql":
        _limit_out_of_in(tree)
    if careful:
        _sqlite_semantics(tree, dialect)
    elif not re.search(r"\bnulls\s+(first|last)\b", sql, re.IGNORECASE):
        _plain(tree, dialect)
    try:
        return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as err:
        raise TranspileError(f"sqlglot cannot write it: {first_line(err)}") from None


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _strings_for_unknown_names(tree, names: ServerNames) -> None:
    """SQLite's rule: a double-quoted name that names nothing is a string."""
    from sqlglot import exp

    aliases = {a.alias.lower() for a in tree.find_all(exp.Alias)}
    aliases |= {a.name.lower() for a in tree.find_all(exp.TableAlias)}
    for column in list(tree.find_all(exp.Column)):
        ident = column.this
        lowered = ident.name.lower() if isinstance(ident, exp.Identifier) else ""
        if (
            ident.args.get("quoted")
            and not column.table
            and not names.known(lowered)
            and lowered not in aliases
        ):
            column.replace(exp.Literal.string(ident.name))


def _kind(column, tables: dict[str, str], names: ServerNames) -> str | None:
    """The kind of a column of the query: through its table or alias, else from every table of the
    query that has a column of that name, when they agree."""
    name = column.name.lower()
    if column.table:
        table = tables.get(column.table.lower())
        return names.kinds.get((table, name)) if table else None
    kinds = {names.kinds[t, name] for t in set(tables.values()) if (t, name) in names.kinds}
    return kinds.pop() if len(kinds) == 1 else None


def _text_affinity(tree, names: ServerNames, dialect: str) -> None:
    """Numbers compared with a text column become strings, as SQLite compares them; PostgreSQL's AVG
    and SUM of a text column read it as a number, as SQLite's do."""
    from sqlglot import exp

    tables = {}
    for table in tree.find_all(exp.Table):
        tables[table.name.lower()] = table.name.lower()
        if table.alias:
            tables[table.alias.lower()] = table.name.lower()

    def is_text(node) -> bool:
        return isinstance(node, exp.Column) and _kind(node, tables, names) == "text"

    def as_string(node) -> None:
        number = node.this if isinstance(node, exp.Neg) else node
        if isinstance(number, exp.Literal) and not number.is_string:
            node.replace(exp.Literal.string(node.sql()))

    comparisons = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
    for node in list(tree.find_all(*comparisons, exp.In, exp.Between)):
        if isinstance(node, comparisons):
            if is_text(node.this):
                as_string(node.expression)
            elif is_text(node.expression):
                as_string(node.this)
        elif is_text(node.this):
            for value in [*node.expressions, node.args.get("low"), node.args.get("high")]:
                if value is not None:
                    as_string(value)
    if dialect == "postgres":
        for aggregate in list(tree.find_all(exp.Avg, exp.Sum)):
            if is_text(aggregate.this):
                aggregate.set("this", exp.cast(aggregate.this, "DOUBLE PRECISION"))


def _respell(ident, name: str, dialect: str, case_sensitive: bool) -> None:
    """Make `ident` name the server's `name`, changing the SQL only where it must."""
    folds = dialect == "postgres" and not ident.quoted and ident.name.lower() == name
    if folds and not needs_quotes(name, dialect):
        return  # PostgreSQL folds it to the server's name as written
    quoted = needs_quotes(name, dialect)
    keep = dialect == "mysql" and not case_sensitive and not quoted  # MySQL ignores a column's case
    ident.set("this", ident.name if keep else name)
    ident.set("quoted", quoted)


def _server_spelling(tree, names: ServerNames, dialect: str) -> None:
    from sqlglot import exp

    aliases = {a.name.lower(): a.name for a in tree.find_all(exp.TableAlias) if a.name}
    for table in tree.find_all(exp.Table):
        ident = table.this
        if isinstance(ident, exp.Identifier) and ident.name.lower() in names.tables:
            _respell(ident, names.tables[ident.name.lower()], dialect, case_sensitive=True)
    for column in tree.find_all(exp.Column):
        ident = column.this
        if isinstance(ident, exp.Identifier) and names.columns.get(ident.name.lower()):
            _respell(ident, names.columns[ident.name.lower()], dialect, case_sensitive=False)
        qualifier = column.args.get("table")
        if isinstance(qualifier, exp.Identifier):
            lowered = qualifier.name.lower()
            if lowered in aliases:  # T1 and t1 in one query: one spelling, as MySQL needs
                qualifier.set("this", aliases[lowered])
            elif lowered in names.tables:
                _respell(qualifier, names.tables[lowered], dialect, case_sensitive=True)


def _alias_derived_tables(tree) -> None:
    """`FROM (SELECT ...)` as `FROM (SELECT ...) AS derived`: SQLite needs no alias, the servers do."""
    from sqlglot import exp

    for index, subquery in enumerate(tree.find_all(exp.Subquery)):
        if isinstance(subquery.parent, (exp.From, exp.Join)) and not subquery.alias:
            subquery.set("alias", exp.TableAlias(this=exp.to_identifier(f"derived{index or ''}")))


def _limit_out_of_in(tree) -> None:
    """`x IN (SELECT ... LIMIT n)` as `x IN (SELECT * FROM (SELECT ... LIMIT n) AS limited)`."""
    from sqlglot import exp

    for node in list(tree.find_all(exp.In)):
        query = node.args.get("query")
        inner = query.this if isinstance(query, exp.Subquery) else query
        if isinstance(inner, exp.Select) and inner.args.get("limit"):
            derived = exp.Subquery(this=inner.copy(), alias=exp.TableAlias(this=exp.to_identifier("limited")))
            node.set("query", exp.Subquery(this=exp.select("*").from_(derived)))


def _plain(tree, dialect: str) -> None:
    """Leave out what sqlglot adds only for NULLs and zero divisors: the dialect's own NULL order, `/`."""
    from sqlglot import exp
    from sqlglot.dialects.dialect import Dialect

    ordering = Dialect.get_or_raise(dialect).NULL_ORDERING
    for ordered in tree.find_all(exp.Ordered):
        desc = bool(ordered.args.get("desc"))
        small = ordering == "nulls_are_small"
        ordered.set("nulls_first", (not desc) if small else (desc and ordering == "nulls_are_large"))
    for division in tree.find_all(exp.Div):
        division.set("safe", False)


def _sqlite_semantics(tree, dialect: str) -> None:
    """LIKE that ignores case as SQLite's does; PostgreSQL: GROUP BY every column selected bare."""
    from sqlglot import exp

    for like in list(tree.find_all(exp.Like)):
        if dialect == "postgres":
            like.replace(exp.ILike(this=like.this, expression=like.expression))
        else:
            like.set("this", exp.Lower(this=like.this))
            like.set("expression", exp.Lower(this=like.expression))
    if dialect == "postgres":
        for select in list(tree.find_all(exp.Select)):
            _group_bare_columns(select)


def _group_bare_columns(select) -> None:
    """Add to GROUP BY the columns a grouped SELECT (or its ORDER BY) uses outside any aggregate."""
    from sqlglot import exp

    group = select.args.get("group")
    stars = (isinstance(e, exp.Star) or isinstance(e, exp.Column) and e.is_star for e in select.expressions)
    if not group or any(stars):
        return
    keys = {e.sql().lower() for e in group.expressions}
    aliases = {e.alias.lower() for e in select.expressions if isinstance(e, exp.Alias)}
    order = select.args.get("order")
    for part in [*select.expressions, *(order.expressions if order else [])]:
        for column in list(part.find_all(exp.Column)):
            if column.find_ancestor(exp.AggFunc, exp.Select) is not select:
                continue  # aggregated, or a column of a subquery
            if not column.table and column.name.lower() in aliases:
                continue
            if column.sql().lower() not in keys:
                keys.add(column.sql().lower())
                group.append("expressions", column.copy())


def tie_broken(sql: str) -> str | None:
    """The SQLite query with its output columns (1, 2, ...) added as last keys of every ORDER BY, so
    that ties no longer leave the order to the engine; None when it has no ORDER BY to extend."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except sqlglot.errors.SqlglotError:
        return None
    extended = False
    for select in tree.find_all(exp.Select):
        order = select.args.get("order")
        if order is None or any(e.is_star for e in select.expressions):
            continue
        for position in range(1, len(select.expressions) + 1):
            order.append("expressions", exp.Ordered(this=exp.Literal.number(position), nulls_first=True))
        extended = True
    return tree.sql("sqlite") if extended else None


def orders(sql: str) -> bool:
    """Whether the query's result is ordered: an ORDER BY of the query itself, not of a subquery
    (the evaluator's textual rule, "order by" anywhere in the text, would compare the rows of
    `... WHERE x = (SELECT ... ORDER BY ... LIMIT 1)` in order)."""
    import sqlglot

    return bool(sqlglot.parse_one(sql, read="sqlite").args.get("order"))
