"""Reading a `Schema` (and sample values) out of a live database.

SQLite files are read directly with PRAGMAs, opened read-only. Sample values and rows are attached
to any schema whose `db_path` points at a SQLite file, whatever the schema was built from. Any
other database is read through SQLAlchemy's inspector from its URL (`schema_from_url`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqltune.data.schema import Column, ForeignKey, Schema, Table, natural_name
from sqltune.db import connect_readonly
from sqltune.db.urls import hide_password, is_url, with_driver  # noqa: F401  (is_url: re-exported)
from sqltune.errors import DataError


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plain_value(value: Any) -> Any:
    """A database value as something JSON can hold (dates and decimals as text, blobs elided)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "<blob>"
    return str(value)


def schema_from_sqlite(path: str | Path, db_id: str | None = None) -> Schema:
    """Introspect a SQLite file: tables, declared column types, primary and foreign keys. A file
    without tables is an error: SQLite reads an empty file as an empty database, and a schema with
    nothing in it would only yield prompts (or pairs) about nothing."""
    path = Path(path)
    conn = connect_readonly(path)
    conn.set_authorizer(None)  # PRAGMAs are needed here; the connection is still read-only
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        tables, foreign_keys = [], []
        for name in names:
            info = conn.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
            columns = [
                Column(name=row[1], type=(row[2] or "").upper(), natural_name=natural_name(row[1]))
                for row in info
            ]
            pk = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
            tables.append(
                Table(
                    name=name,
                    columns=columns,
                    primary_keys=[pk] if pk else [],
                    natural_name=natural_name(name),
                )
            )
            for row in conn.execute(f"PRAGMA foreign_key_list({_quote(name)})").fetchall():
                ref_table, source, target = row[2], row[3], row[4]
                if target is None:  # REFERENCES t without a column: the referenced table's primary key
                    ref_info = conn.execute(f"PRAGMA table_info({_quote(ref_table)})").fetchall()
                    ref_pk = [r[1] for r in ref_info if r[5]]
                    target = ref_pk[0] if ref_pk else source
                foreign_keys.append(ForeignKey(name, source, ref_table, target))
    except Exception as err:  # sqlite3.DatabaseError: not a database, or a corrupt one
        raise DataError(f"{path}: cannot read the database schema ({err})") from None
    finally:
        conn.close()
    if not tables:
        raise DataError(f"{path}: no tables in the database (an empty file?)")
    return Schema(db_id=db_id or path.stem, tables=tables, foreign_keys=foreign_keys, db_path=str(path))


def schema_from_url(url: str, db_id: str | None = None, values: int = 3) -> Schema:
    """Introspect any database SQLAlchemy can reach: tables, column types, primary and foreign keys,
    and up to `values` distinct sample values per column.

    A `sqlite:///file` URL is read like a SQLite file (read-only, and the schema keeps the file as
    its `db_path`, so later steps can execute SQL on it). Any failure to parse the URL, load its
    driver or connect is a DataError that names the URL with its password hidden.
    """
    import sqlalchemy as sa

    shown = hide_password(url)
    try:
        parsed = sa.engine.make_url(url)
    except Exception as err:  # ArgumentError: not a URL SQLAlchemy understands
        raise DataError(f"cannot read database URL '{shown}': {err}") from None
    plain_file = "uri" not in parsed.query and parsed.database not in (None, "", ":memory:")
    if parsed.get_backend_name() == "sqlite" and plain_file:
        path = Path(parsed.database)
        if not path.is_file():
            raise DataError(f"cannot read database URL '{shown}': database not found: {path}")
        return attach_samples(schema_from_sqlite(path, db_id), values=values)
    try:
        engine = sa.create_engine(with_driver(url))
        try:
            with engine.connect() as conn:
                name = Path(parsed.database).stem if parsed.database else parsed.get_backend_name()
                schema = _inspect(conn, db_id or name, values)
        finally:
            engine.dispose()
    except Exception as err:  # driver missing, host unreachable, authentication, permissions...
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot read database URL '{shown}': {first_line}") from None
    return schema


def _inspect(conn, db_id: str, values: int) -> Schema:
    import sqlalchemy as sa

    inspector = sa.inspect(conn)
    tables, foreign_keys = [], []
    for name in inspector.get_table_names():
        columns = [
            Column(name=c["name"], type=str(c["type"]).upper(), natural_name=natural_name(c["name"]))
            for c in inspector.get_columns(name)
        ]
        pk = (inspector.get_pk_constraint(name) or {}).get("constrained_columns") or []
        tables.append(Table(name, columns, [list(pk)] if pk else [], natural_name(name)))
        for fk in inspector.get_foreign_keys(name):
            for source, target in zip(fk["constrained_columns"], fk["referred_columns"]):
                foreign_keys.append(ForeignKey(name, source, fk["referred_table"], target))
        for column in columns if values > 0 else []:
            ref = sa.column(column.name)
            query = (
                sa.select(ref).select_from(sa.table(name)).where(ref.is_not(None)).distinct().limit(values)
            )
            column.values = [plain_value(row[0]) for row in conn.execute(query)]
    return Schema(db_id=db_id, tables=tables, foreign_keys=foreign_keys)


def attach_samples(schema: Schema, values: int = 0, rows: int = 0) -> Schema:
    """Fill `Column.values` with up to `values` distinct non-null values and `Table.sample_rows` with
    up to `rows` rows, read from the schema's SQLite file. Tables or columns the file lacks are skipped."""
    if not schema.db_path or (values <= 0 and rows <= 0):
        return schema
    conn = connect_readonly(schema.db_path)
    try:
        for table in schema.tables:
            for column in table.columns if values > 0 else []:
                try:
                    column.values = [
                        plain_value(r[0])
                        for r in conn.execute(
                            f"SELECT DISTINCT {_quote(column.name)} FROM {_quote(table.name)} "
                            f"WHERE {_quote(column.name)} IS NOT NULL AND {_quote(column.name)} != '' LIMIT ?",
                            (values,),
                        )
                    ]
                except Exception:  # a tables.json name the file does not have
                    column.values = []
            if rows > 0:
                selected = ", ".join(_quote(c.name) for c in table.columns)
                try:
                    table.sample_rows = [
                        [plain_value(v) for v in r]
                        for r in conn.execute(f"SELECT {selected} FROM {_quote(table.name)} LIMIT ?", (rows,))
                    ]
                except Exception:
                    table.sample_rows = []
    finally:
        conn.close()
    return schema


def with_declared_types(schema: Schema) -> Schema:
    """Replace Spider's coarse column types (text, number) by the types the SQLite file declares."""
    if not schema.db_path or not Path(schema.db_path).is_file():
        return schema
    live = schema_from_sqlite(schema.db_path, schema.db_id)
    for table in schema.tables:
        live_table = live.table(table.name)
        for column in table.columns:
            live_column = live_table.column(column.name) if live_table else None
            if live_column is not None and live_column.type:
                column.type = live_column.type
    return schema
