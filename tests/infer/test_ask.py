"""`sqltune ask` on a small SQLite database."""

import shutil
import sqlite3

import pytest

from sqltune.cli import main as cli
from sqltune.db import QueryResult, execute
from sqltune.infer.ask import NOT_SQL, Reply, show
from sqltune.run_index import record_run
from tests.infer.conftest import write_concert_db

QUESTION = "How many singers are there?"


@pytest.fixture
def no_runs(monkeypatch, tmp_path):
    """An empty sqltune cache: no finished `sqltune run` is known."""
    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path / "cache"))


def test_an_untrained_run_fails_honestly_in_one_line(tiny_run, tmp_path, capsys):
    db = write_concert_db(tmp_path / "concert.sqlite")
    before = db.read_bytes()
    status = cli(["ask", "--db", str(db), f"run_dir={tiny_run}", QUESTION, "max_new_tokens=8"])
    out, err = capsys.readouterr()
    assert status == 1 and ("the model's answer is not SQL" in err or "the query failed" in err)
    assert db.read_bytes() == before


def test_an_answer_that_is_not_sql_is_one_line(capsys):
    raw = "The Stadium_ID of concert is the foreign key of stadium.\n" * 20
    show(Reply(raw.strip(), raw, QueryResult(error=NOT_SQL)), max_rows=20)
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and len(err) < 120
    assert err.startswith("the model's answer is not SQL: 'The Stadium_ID of concert is")


def test_without_a_run_ask_says_in_one_line_what_to_run(no_runs, tmp_path, capsys):
    db = write_concert_db(tmp_path / "concert.sqlite")
    assert cli(["ask", "--db", str(db), QUESTION]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "cannot write SQL until it is fine-tuned" in err
    assert f"own_database.yaml db={db}" in err and "quickstart.yaml" in err


def test_ask_uses_the_run_for_its_database_else_the_quickstart_run(no_runs, tiny_run, tmp_path, capsys):
    shop, crm = (write_concert_db(tmp_path / name) for name in ("shop.sqlite", "crm.sqlite"))
    quickstart = shutil.copytree(tiny_run, tmp_path / "quickstart")
    record_run(tiny_run, "synth", str(shop))
    record_run(quickstart, "demo")
    for db, run in ((shop, tiny_run), (crm, quickstart)):
        assert cli(["ask", "--db", str(db), QUESTION, "max_new_tokens=4"]) == 1
        assert f"using the fine-tuned run {run} " in capsys.readouterr().err


def test_an_explicit_model_is_honoured(no_runs, tiny_model_dir, tmp_path, capsys):
    db = write_concert_db(tmp_path / "concert.sqlite")
    assert (
        cli(["ask", "--db", str(db), QUESTION, f"model_name_or_path={tiny_model_dir}", "max_new_tokens=4"])
        == 1
    )
    err = capsys.readouterr().err
    assert "fine-tuned" not in err and ("not SQL" in err or "the query failed" in err)


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


def test_sqlite_urls_are_read_only_and_limited(tmp_path):
    url = f"sqlite+pysqlite:///{write_concert_db(tmp_path / 'concert.sqlite')}"
    result = execute(url, "SELECT name FROM singer ORDER BY age", timeout=5, max_rows=2)
    assert (
        result.rows == [("Li",), ("Joe",)] and result.columns == ["name"] and result.error == "too many rows"
    )
    for sql, message in [
        ("DELETE FROM singer", "not authorized"),
        ("SELECT 1; SELECT 2", "one statement at a time"),
        ("SELECT nme FROM singer", "no such column"),
        ("SELEC name FROM", "syntax error"),
    ]:
        assert message in execute(url, sql, timeout=5, max_rows=5).error, sql
    assert execute(url, "SELECT count(*) FROM singer", timeout=5, max_rows=5).rows == [(3,)]


def test_ask_on_a_server_introspects_runs_read_only_and_hides_the_password(server_url, tiny_run, capsys):
    from tests.servers import create_database

    url = create_database(
        server_url,
        "concert",
        [
            "CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name VARCHAR(20), age INTEGER)",
            "INSERT INTO singer VALUES (1, 'Joe', 52), (2, 'Li', 29), (3, 'Ann', 41)",
        ],
    )
    scheme, rest = url.split("://")
    with_password = f"{scheme}://{rest.split('@')[0]}:pw-never-shown@{rest.split('@')[1]}"
    if scheme.startswith("mysql"):  # MariaDB checks the password: the test server's root has none
        with_password = url
    status = cli(["ask", "--db", with_password, f"run_dir={tiny_run}", QUESTION, "max_new_tokens=8"])
    out, err = capsys.readouterr()
    assert status == 1 and ("the model's answer is not SQL" in err or "the query failed" in err)
    assert "pw-never-shown" not in out + err
    assert execute(url, "SELECT COUNT(*) FROM singer").rows == [(3,)]
