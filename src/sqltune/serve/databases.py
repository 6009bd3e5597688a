"""The databases a server answers questions about: `databases=` resolved into named targets.

    sqltune serve databases=shop.sqlite,spider/database,postgresql://reader@127.0.0.1/crm,demo

Each entry is a SQLite file (named by its stem), a folder of `<db>/<db>.sqlite` (Spider's layout)
or of `*.sqlite` files (one database each), a SQLAlchemy URL (named by its database), or `demo`:
the embedded demo databases, built into the sqltune cache. Every name must be unique: `/v1/sql`
picks a database by it. Passwords in URLs never leave the server (`hide_password`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqltune.data.schema import Schema
from sqltune.db.sqlite import folder_databases as sqlite_folder
from sqltune.db.urls import backend, hide_password, is_url
from sqltune.errors import ConfigError


@dataclass(frozen=True)
class ServedDatabase:
    name: str  # what requests call it
    target: str  # the SQLite file or URL `sqltune.db` opens
    dialect: str  # sqlite, postgresql or mysql

    @property
    def shown(self) -> str:
        """The target as messages may show it (a URL's password hidden)."""
        return hide_password(self.target)


def demo_folder() -> Path:
    """The embedded demo databases, (re)built in the sqltune cache: deterministic, and under a second."""
    from sqltune.data.demo import FOLDER, build_demo_databases
    from sqltune.models.embedded import cache_root

    folder = cache_root() / FOLDER
    build_demo_databases(folder)
    return folder


def folder_databases(folder: Path) -> list[ServedDatabase]:
    """The databases of a folder: `<db>/<db>.sqlite` subfolders, then loose SQLite files."""
    return [ServedDatabase(db_id, str(path), "sqlite") for db_id, path in sqlite_folder(folder)]


def url_database(url: str) -> ServedDatabase:
    import sqlalchemy as sa

    try:
        database = sa.engine.make_url(url).database
    except Exception as err:  # ArgumentError: not a URL SQLAlchemy understands
        raise ConfigError(f"databases: cannot read the URL '{hide_password(url)}': {err}") from None
    if not database:
        raise ConfigError(f"databases: the URL '{hide_password(url)}' names no database")
    return ServedDatabase(Path(database).stem, url, backend(url))


def resolve_databases(entries: list[str] | None) -> dict[str, ServedDatabase]:
    """Name -> database, in the order given (see the module docstring)."""
    found: list[ServedDatabase] = []
    for entry in entries or []:
        entry = str(entry).strip()
        path = Path(entry).expanduser()
        if entry == "demo":
            found += folder_databases(demo_folder())
        elif is_url(entry):
            found.append(url_database(entry))
        elif path.is_dir():
            databases = folder_databases(path)
            if not databases:
                raise ConfigError(f"databases: no <db>/<db>.sqlite or *.sqlite files in the folder {path}")
            found += databases
        elif path.is_file():
            found.append(ServedDatabase(path.stem, str(path), "sqlite"))
        else:
            raise ConfigError(f"databases: no such SQLite file or folder: {entry} (or give a URL, or demo)")
    named: dict[str, ServedDatabase] = {}
    for database in found:
        if database.name in named:
            raise ConfigError(
                f"databases: two databases are named '{database.name}' "
                f"({named[database.name].shown} and {database.shown}); serve them from separate folders"
            )
        named[database.name] = database
    return named


def summary(database: ServedDatabase, schema: Schema) -> dict:
    """What `/v1/databases` says about a database: its tables, their columns and the keys."""
    return {
        "name": database.name,
        "dialect": database.dialect,
        "tables": [
            {
                "name": table.name,
                "columns": [{"name": column.name, "type": column.type} for column in table.columns],
                "primary_key": [column for key in table.primary_keys for column in key],
            }
            for table in schema.tables
        ],
        "foreign_keys": [
            f"{key.table}.{key.column} -> {key.ref_table}.{key.ref_column}" for key in schema.foreign_keys
        ],
    }
