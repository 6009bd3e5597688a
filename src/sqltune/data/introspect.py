"""Reading a `Schema` (and sample values) out of a live database.

SQLite files are read directly with PRAGMAs, opened read-only. Sample values and rows are attached
to any schema whose `db_path` points at a SQLite file, whatever the schema was built from.
"""

from __future__ import annotations

from pathlib import Path

from sqltune.data.schema import Column, ForeignKey, Schema, Table, natural_name
from sqltune.db import connect_readonly
from sqltune.errors import DataError


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_from_sqlite(path: str | Path, db_id: str | None = None) -> Schema:
    """Introspect a SQLite file: tables, declared column types, primary and foreign keys."""
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
    return Schema(db_id=db_id or path.stem, tables=tables, foreign_keys=foreign_keys, db_path=str(path))


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
                        r[0]
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
                        list(r)
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
