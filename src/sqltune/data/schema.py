"""`Schema`: the tables, columns and keys of one database, whatever it was read from.

One type serves every source: a Spider-style `tables.json` entry (Spider, SParC, CoSQL, BIRD,
CHASE), a SQLite file introspected directly, or any SQLAlchemy URL (`sqltune.data.introspect`).
Column and key order is kept exactly as the source gives it, because the DB-GPT-Hub prompt format
depends on it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqltune.db.sqlite import find_db_file
from sqltune.errors import DataError


@dataclass
class Column:
    name: str  # the name in the database (tables.json: column_names_original)
    type: str = "text"  # the declared SQL type, or Spider's coarse type (text, number, time, boolean, others)
    natural_name: str = ""  # tables.json column_names: lower case words
    values: list[Any] = field(default_factory=list)  # a few distinct sample values, when attached


@dataclass
class Table:
    name: str
    columns: list[Column] = field(default_factory=list)
    # Each entry is one primary key: a single column, or several for a composite key.
    primary_keys: list[list[str]] = field(default_factory=list)
    natural_name: str = ""
    sample_rows: list[list[Any]] = field(default_factory=list)  # a few rows, when attached

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)


@dataclass
class ForeignKey:
    table: str
    column: str
    ref_table: str
    ref_column: str


@dataclass
class Schema:
    db_id: str
    tables: list[Table] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    db_path: str | None = None  # the SQLite file, when one exists

    def table(self, name: str) -> Table | None:
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]

    def subset(self, keep: set[str]) -> Schema:
        """The same schema with only the tables named in `keep` (case-insensitive) and the keys between them."""
        keep_lower = {name.lower() for name in keep}
        return Schema(
            db_id=self.db_id,
            tables=[t for t in self.tables if t.name.lower() in keep_lower],
            foreign_keys=[
                fk
                for fk in self.foreign_keys
                if fk.table.lower() in keep_lower and fk.ref_table.lower() in keep_lower
            ],
            db_path=self.db_path,
        )

    def without_values(self) -> Schema:
        return Schema(
            db_id=self.db_id,
            tables=[
                Table(
                    t.name,
                    [Column(c.name, c.type, c.natural_name) for c in t.columns],
                    t.primary_keys,
                    t.natural_name,
                )
                for t in self.tables
            ],
            foreign_keys=list(self.foreign_keys),
            db_path=self.db_path,
        )

    # ---- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Schema:
        return cls(
            db_id=data["db_id"],
            tables=[
                Table(
                    name=t["name"],
                    columns=[Column(**c) for c in t["columns"]],
                    primary_keys=[list(k) for k in t.get("primary_keys", [])],
                    natural_name=t.get("natural_name", ""),
                    sample_rows=[list(r) for r in t.get("sample_rows", [])],
                )
                for t in data["tables"]
            ],
            foreign_keys=[ForeignKey(**fk) for fk in data.get("foreign_keys", [])],
            db_path=data.get("db_path"),
        )

    def to_spider(self) -> dict:
        """This schema as a Spider-style tables.json entry (the inverse of `from_spider`)."""
        columns: list[list] = [[-1, "*"]]
        natural: list[list] = [[-1, "*"]]
        types = ["text"]
        index: dict[tuple[str, str], int] = {}
        for table_index, table in enumerate(self.tables):
            for column in table.columns:
                index[(table.name, column.name)] = len(columns)
                columns.append([table_index, column.name])
                natural.append([table_index, column.natural_name or natural_name(column.name)])
                types.append(spider_type(column.type))
        primary: list = []
        for table in self.tables:
            for key in table.primary_keys:
                ids = [index[(table.name, name)] for name in key]
                primary.append(ids[0] if len(ids) == 1 else ids)
        foreign = [
            [index[(fk.table, fk.column)], index[(fk.ref_table, fk.ref_column)]]
            for fk in self.foreign_keys
            if (fk.table, fk.column) in index and (fk.ref_table, fk.ref_column) in index
        ]
        return {
            "db_id": self.db_id,
            "table_names_original": self.table_names,
            "table_names": [t.natural_name or natural_name(t.name) for t in self.tables],
            "column_names_original": columns,
            "column_names": natural,
            "column_types": types,
            "primary_keys": primary,
            "foreign_keys": foreign,
        }

    # ---- sources -------------------------------------------------------------------------------------
    @classmethod
    def from_spider(
        cls, entry: dict, db_path: str | Path | None = None, where: str = "tables.json"
    ) -> Schema:
        """Build a schema from one entry of a Spider-style tables.json."""
        try:
            db_id = entry["db_id"]
            table_names = entry["table_names_original"]
            natural_tables = entry.get("table_names") or table_names
            columns = entry["column_names_original"]
            natural_columns = entry.get("column_names") or columns
            types = entry.get("column_types") or ["text"] * len(columns)
            primary = entry.get("primary_keys", [])
            foreign = entry.get("foreign_keys", [])
        except (KeyError, TypeError) as err:
            name = entry.get("db_id", "?") if isinstance(entry, dict) else "?"
            raise DataError(f"{where}: entry '{name}' lacks field {err}") from None
        where = f"{where} [{db_id}]"
        tables = [
            Table(name=name, natural_name=natural) for name, natural in zip(table_names, natural_tables)
        ]

        def column_at(index: int) -> tuple[Table, str]:
            try:
                table_index, name = columns[index]
                return tables[table_index], name
            except (IndexError, TypeError, ValueError):
                raise DataError(f"{where}: column index {index} out of range") from None

        for index, (table_index, name) in enumerate(columns):
            if table_index < 0:  # the '*' pseudo column
                continue
            if table_index >= len(tables):
                raise DataError(
                    f"{where}: column '{name}' refers to table {table_index}, which does not exist"
                )
            natural = natural_columns[index][1] if index < len(natural_columns) else name
            ctype = types[index] if index < len(types) else "text"
            tables[table_index].columns.append(Column(name=name, type=ctype, natural_name=natural))
        for key in primary:
            indices = key if isinstance(key, list) else [key]
            if not indices:
                continue
            owner, _ = column_at(indices[0])
            owner.primary_keys.append([column_at(i)[1] for i in indices])
        foreign_keys = []
        for pair in foreign:
            try:
                source, target = pair
            except (TypeError, ValueError):
                raise DataError(f"{where}: malformed foreign key {pair!r}") from None
            (src_table, src_col), (ref_table, ref_col) = column_at(source), column_at(target)
            foreign_keys.append(ForeignKey(src_table.name, src_col, ref_table.name, ref_col))
        return cls(db_id, tables, foreign_keys, str(db_path) if db_path else None)


def natural_name(name: str) -> str:
    """'DepartmentID' / 'department_id' -> 'department id' (the style of tables.json column_names)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return re.sub(r"[_\s]+", " ", spaced).strip().lower()


def spider_type(declared: str) -> str:
    """A declared SQL type as Spider's coarse column type (text, number, time, boolean, others)."""
    declared = (declared or "").upper()
    if declared in ("TEXT", "NUMBER", "TIME", "BOOLEAN", "OTHERS"):
        return declared.lower()
    if any(word in declared for word in ("INT", "REAL", "FLOA", "DOUB", "NUM", "DEC")):
        return "number"
    if any(word in declared for word in ("DATE", "TIME", "YEAR")):
        return "time"
    if "BOOL" in declared:
        return "boolean"
    if not declared or any(word in declared for word in ("CHAR", "TEXT", "CLOB", "STRING")):
        return "text"
    return "others"


def load_tables_json(path: str | Path, db_dir: str | Path | None = None) -> dict[str, Schema]:
    """Read a Spider-style tables.json into {db_id: Schema}; db files are attached when present."""
    from sqltune.files import read_json

    path = Path(path)
    entries = read_json(path, "tables file")
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of database entries")
    schemas = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or "db_id" not in entry:
            raise DataError(f"{path}: entry {position} has no db_id")
        db_file = find_db_file(db_dir, entry["db_id"]) if db_dir else None
        schemas[entry["db_id"]] = Schema.from_spider(entry, db_file, where=str(path))
    return schemas
