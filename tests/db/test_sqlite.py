import hashlib
import sqlite3

import pytest

from sqltune.db import connect_readonly, execute, run_query
from sqltune.errors import DataError


@pytest.fixture()
def small_db(tmp_path):
    path = tmp_path / "small.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(100)])
    conn.commit()
    conn.close()
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_select(small_db):
    result = execute(small_db, "SELECT count(*) FROM t")
    assert result.ok and result.rows == [(100,)]


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE t",
        "DELETE FROM t",
        "INSERT INTO t VALUES (1000, 'x')",
        "ATTACH DATABASE 'other.sqlite' AS o",
        "PRAGMA writable_schema = 1",
        "VACUUM INTO 'copy.sqlite'",
        "CREATE TABLE u (a)",
    ],
)
def test_writes_are_refused_and_file_unchanged(small_db, sql, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = digest(small_db)
    result = execute(small_db, sql)
    assert not result.ok
    assert digest(small_db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.sqlite"]


def test_timeout_stops_a_runaway_query(small_db):
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    result = execute(small_db, endless, timeout=0.5)
    assert result.error == "timeout"
    assert result.seconds < 5


def test_row_limit(small_db):
    conn = connect_readonly(small_db)
    result = run_query(conn, "SELECT * FROM t a, t b", max_rows=50)
    assert result.error == "too many rows" and len(result.rows) == 50


def test_missing_database_is_named(tmp_path):
    with pytest.raises(DataError, match="database not found: .*nope.sqlite"):
        execute(tmp_path / "nope.sqlite", "SELECT 1")
    assert not (tmp_path / "nope.sqlite").exists()
