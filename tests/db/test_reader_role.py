"""The read-only role docs/databases.md recommends, run as written on real servers: the role can
read, and it cannot write even when sqltune's own checks are bypassed (plain driver calls)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from sqltune.db import execute
from sqltune.db.urls import with_driver
from tests.conftest import ROOT
from tests.servers import create_database

DOCS = ROOT / "docs" / "databases.md"


def documented(block: str) -> list[str]:
    """The statements of the fenced block ```sql <block> in docs/databases.md."""
    match = re.search(rf"```sql {block}\n(.*?)```", DOCS.read_text(), re.S)
    assert match, f"docs/databases.md has no ```sql {block} block"
    return [s.strip() for s in match.group(1).split(";") if s.strip()]


def test_the_documented_role_reads_and_cannot_write(server_url):
    create_database(
        server_url,
        "shop",
        [
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)",
            "INSERT INTO orders VALUES (1, 9.5), (2, 20.0)",
        ],
    )
    postgres = server_url.startswith("postgresql")
    admin = sa.create_engine(with_driver(server_url + "shop"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for statement in documented("postgres-reader-role" if postgres else "mysql-reader-role"):
            conn.exec_driver_sql(statement.replace("%", "%%"))  # no parameters: % is literal
    admin.dispose()
    host = server_url.split("@", 1)[1]
    reader = f"{server_url.split('://')[0]}://sqltune_reader:change-me@{host}shop"

    assert execute(reader, "SELECT SUM(total) FROM orders").rows in ([(29.5,)], [(pytest.approx(29.5),)])
    engine = sa.create_engine(with_driver(reader))
    for write in ("DELETE FROM orders", "INSERT INTO orders VALUES (3, 1.0)", "DROP TABLE orders"):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql(write)
    engine.dispose()
    assert execute(reader, "SELECT COUNT(*) FROM orders").rows == [(2,)]
