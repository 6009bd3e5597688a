"""Database URLs: which driver, which database, and never a password in anything shown or saved.

Users write the URLs they know (`postgresql://user:pw@host:5432/shop`, `mysql://...`,
`mariadb://...`); sqltune picks the drivers it installs (psycopg 3, PyMySQL) unless the URL names
one. A URL may hold `{db_id}` where the database name goes, so one URL serves a whole benchmark
whose databases were loaded by `sqltune db load`.
"""

from __future__ import annotations

import re

from sqltune.errors import ConfigError

# backend name -> driver sqltune installs (used when a URL names no driver)
DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
# SQLAlchemy backend -> sqlglot dialect
SQLGLOT_DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}
DB_ID = "{db_id}"


def is_url(text: str) -> bool:
    """Whether a database argument names a SQLAlchemy URL (`dialect[+driver]://...`) rather than a file."""
    return "://" in str(text)


def hide_password(url: str) -> str:
    """The URL as it may be shown in messages, logs, reports and run cards: 'user:***@host'."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def scrub(text: str, url: str) -> str:
    """`text` (an error message, say) with the URL's password replaced by ***, wherever it appears."""
    password = _password(url)
    text = text.replace(url, hide_password(url))
    return text.replace(password, "***") if password else text


def _password(url: str) -> str | None:
    match = re.search(r"://[^:/@]*:([^@]*)@", str(url))
    return match.group(1) if match and match.group(1) else None


def with_driver(url: str) -> str:
    """The URL with sqltune's driver for its backend when it names none (postgresql -> psycopg)."""
    scheme, sep, rest = url.partition("://")
    if "+" not in scheme and scheme in DRIVERS:
        backend = "mysql" if scheme == "mariadb" else scheme
        return f"{backend}+{DRIVERS[scheme]}{sep}{rest}"
    if scheme == "postgres":  # the libpq spelling
        return f"postgresql+psycopg{sep}{rest}"
    return url


def backend(url: str) -> str:
    """'postgresql', 'mysql' or 'sqlite' (MariaDB speaks MySQL), from the URL's scheme."""
    scheme = url.partition("://")[0].split("+")[0]
    return {"postgres": "postgresql", "mariadb": "mysql"}.get(scheme, scheme)


def for_database(url: str, db_id: str) -> str:
    """The URL of one database: `{db_id}` replaced by its name. A URL without the placeholder names
    one database for every db_id."""
    if DB_ID in url and not re.fullmatch(r"[A-Za-z0-9_]+", db_id):
        raise ConfigError(f"db_id '{db_id}' cannot be a database name in a URL")
    return url.replace(DB_ID, db_id)


def server_url(url: str) -> str:
    """The URL with no database part (to create databases on the server)."""
    head, sep, rest = url.partition("://")
    authority, slash, _ = rest.partition("/")
    query = ("?" + rest.partition("?")[2]) if "?" in rest else ""
    return f"{head}{sep}{authority}{slash}{query}"


def sqlite_file(url: str) -> str:
    """The file of a `sqlite:///path` URL (SQLite URLs run through `sqltune.db.sqlite`, read-only)."""
    import sqlalchemy as sa

    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        raise ConfigError(f"database URL '{hide_password(url)}': name a SQLite file (sqlite:///path)")
    return database
