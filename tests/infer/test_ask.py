"""`sqltune ask` on a small SQLite database."""

import sqlite3

from sqltune.cli import main as cli
from sqltune.db import execute
from sqltune.infer.ask import Reply, execute_url, show
from tests.infer.conftest import write_concert_db


def test_ask_prints_the_sql_and_fails_honestly_on_a_bad_query(tiny_run, tmp_path, capsys):
    db = write_concert_db(tmp_path / "concert.sqlite")
    before = db.read_bytes()
    status = cli(
        ["ask", "--db", str(db), f"run_dir={tiny_run}", "How many singers are there?", "max_new_tokens=8"]
    )
    out, err = capsys.readouterr()
    assert status == 1 and out.strip() and "the query failed" in err  # an untrained model writes no SQL
    assert db.read_bytes() == before


def test_rows_are_shown_as_a_table_with_the_row_limit(tmp_path, capsys):
    db = write_concert_db(tmp_path / "concert.sqlite")
    sql = "SELECT name, country FROM singer ORDER BY name"
    show(Reply(sql, sql, execute(db, sql, max_rows=2)), max_rows=2)
    out, err = capsys.readouterr()
    assert out.startswith(sql) and "Ann" in out and "Joe" in out and "Li" not in out
    assert "first 2 rows shown" in err


def test_ask_refuses_writes_and_bad_input(tmp_path, capsys):
    db = write_concert_db(tmp_path / "concert.sqlite")
    result = execute(db, "DELETE FROM singer")
    assert not result.ok and sqlite3.connect(db).execute("SELECT count(*) FROM singer").fetchone() == (3,)
    assert cli(["ask", "--db", str(tmp_path / "missing.sqlite"), "How many?"]) == 2
    assert "no such SQLite file" in capsys.readouterr().err
    assert cli(["ask", "--db", str(db)]) == 2
    assert "give a database and a question" in capsys.readouterr().err


def test_queries_through_sqlalchemy_are_read_only_and_limited(tmp_path):
    url = f"sqlite+pysqlite:///{write_concert_db(tmp_path / 'concert.sqlite')}"
    result = execute_url(url, "SELECT name FROM singer ORDER BY age", timeout=5, max_rows=2)
    assert (
        result.rows == [("Li",), ("Joe",)] and result.columns == ["name"] and result.error == "too many rows"
    )
    for sql, message in [
        ("DELETE FROM singer", "only a single read-only query"),
        ("SELECT 1; SELECT 2", "only a single read-only query"),
        ("SELECT nme FROM singer", "no such column"),
        ("SELEC name FROM", "not valid SQL"),
    ]:
        assert message in execute_url(url, sql, timeout=5, max_rows=5).error, sql
    assert execute_url(url, "SELECT count(*) FROM singer", timeout=5, max_rows=5).rows == [(3,)]
