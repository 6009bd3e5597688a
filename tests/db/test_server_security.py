"""Untrusted SQL on real PostgreSQL and MariaDB servers: nothing changes, nothing hangs, one statement.

Every hostile query of the issue runs through `sqltune.db.execute` on a real server; checksums of
every table before and after prove nothing changed, and wall-clock bounds prove the time limits
stop runaways on the server.
"""

from __future__ import annotations

import time

import pytest

from sqltune.db import execute
from sqltune.db.server import ServerDatabase
from sqltune.db.urls import hide_password, scrub, with_driver
from tests.servers import checksum, create_database

SETUP = [
    "CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name VARCHAR(40), age INTEGER)",
    "INSERT INTO singer VALUES (1, 'Ann', 30), (2, 'Bo', 41), (3, 'Cy', 25)",
    "CREATE TABLE big (n INTEGER)",
    "INSERT INTO big VALUES " + ", ".join(f"({i})" for i in range(200)),
]


@pytest.fixture
def shop(server_url) -> str:
    return create_database(server_url, "shop", SETUP)


def test_a_query_returns_its_rows(shop):
    result = execute(shop, "SELECT name FROM singer WHERE age > 28 ORDER BY name")
    assert result.ok, result.error
    assert result.columns == ["name"]
    assert result.rows == [("Ann",), ("Bo",)]


def test_percent_signs_reach_the_server_as_written(shop):
    result = execute(shop, "SELECT name FROM singer WHERE name LIKE '%n%' OR name = '50%'")
    assert result.ok, result.error
    assert result.rows == [("Ann",)]


HOSTILE = {
    "drop": "DROP TABLE singer",
    "delete": "DELETE FROM singer",
    "update": "UPDATE singer SET age = 0",
    "insert select": "INSERT INTO singer SELECT singer_id + 10, name, age FROM singer",
    "create as": "CREATE TABLE copy AS SELECT * FROM singer",
    "two statements": "SELECT 1; DROP TABLE singer",
    "two statements, no space": "SELECT 1;DELETE FROM singer;",
    "select into": "SELECT * INTO copy FROM singer",
    "outfile": "SELECT * FROM singer INTO OUTFILE '/tmp/sqltune-leak.txt'",
    "copy to program": "COPY singer TO PROGRAM 'touch /tmp/sqltune-pwned'",
    "write in a cte": "WITH gone AS (DELETE FROM singer RETURNING *) SELECT * FROM gone",
    "set read write": "SET TRANSACTION READ WRITE",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_nothing_changes(shop, name):
    before = checksum(shop)
    result = execute(shop, HOSTILE[name], timeout=5)
    assert not result.ok, f"{name} ran: {result}"
    assert checksum(shop) == before


WRITING_FUNCTION = {
    "postgresql": "CREATE FUNCTION wipe() RETURNS int LANGUAGE sql AS $$ DELETE FROM singer; SELECT 1 $$",
    "mysql": "CREATE FUNCTION wipe() RETURNS INT MODIFIES SQL DATA BEGIN DELETE FROM singer; RETURN 1; END",
}


def test_a_write_the_guard_cannot_see_is_stopped_by_the_read_only_transaction(shop):
    """`SELECT wipe()` is one plain query to any parser; the function behind it deletes. The
    server's read-only transaction is what stops it."""
    import sqlalchemy as sa

    with ServerDatabase(shop) as database:
        engine = sa.create_engine(with_driver(shop))
        with engine.begin() as conn:
            conn.exec_driver_sql(WRITING_FUNCTION[database.backend])
        engine.dispose()
        before = checksum(shop)
        result = database.run("SELECT wipe()", timeout=5)
    assert not result.ok and "read" in result.error.lower() and "only" in result.error.lower(), result.error
    assert checksum(shop) == before


def test_a_slow_query_is_stopped_by_the_server(shop):
    sleep = "SELECT pg_sleep(60)" if shop.startswith("postgresql") else "SELECT SLEEP(60) FROM singer"
    start = time.monotonic()
    result = execute(shop, sleep, timeout=1)
    assert time.monotonic() - start < 10
    # MariaDB's SLEEP() returns 1 when interrupted; a SLEEP per row makes the statement time out.
    assert result.error == "timeout", result


def test_a_cartesian_runaway_is_capped_and_stopped(shop):
    runaway = "SELECT a.n, b.n, c.n, d.n FROM big a, big b, big c, big d"  # 1.6e9 rows
    start = time.monotonic()
    capped = execute(shop, runaway, timeout=2, max_rows=1000)
    assert time.monotonic() - start < 10
    assert capped.error == "too many rows" and len(capped.rows) == 1000
    counted = execute(shop, "SELECT COUNT(*) FROM big a, big b, big c, big d", timeout=1)
    assert counted.error == "timeout"
    assert time.monotonic() - start < 20


def test_the_connection_is_reused_after_every_failure(shop):
    with ServerDatabase(shop) as database:
        for sql in (
            "SELECT nope FROM singer",
            "DROP TABLE singer",
            "SELECT COUNT(*) FROM big a, big b, big c, big d",
        ):
            database.run(sql, timeout=0.5)
        assert database.run("SELECT COUNT(*) FROM singer").rows == [(3,)]


def test_a_password_is_never_shown(server_url):
    scheme, rest = server_url.split("://")
    url = f"{scheme}://sqltune_reader:s3cret-pw@{rest.split('@')[1]}nowhere"
    result = execute(url, "SELECT 1", timeout=5)
    assert not result.ok and "s3cret-pw" not in str(result)
    assert hide_password(url) == url.replace("s3cret-pw", "***")
    assert "s3cret-pw" not in scrub(f"could not connect to {url}: bad password s3cret-pw", url)
