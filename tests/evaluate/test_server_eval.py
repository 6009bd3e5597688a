"""`sqltune eval --db-url`: execution accuracy on real PostgreSQL and MariaDB servers.

The same benchmark is built twice, as a SQLite file and as a database on each server, and scored on
both: example by example the verdicts must agree, since the comparison rules are the same. Hostile
and slow predictions must neither change the server nor stop the run, gold SQL the server rejects
is counted apart instead of scored, and a password in the URL never reaches the terminal or the
report.
"""

from __future__ import annotations

import json

import pytest

from sqltune.cli import main
from sqltune.db.urls import with_driver
from sqltune.evaluate import evaluate
from tests.servers import checksum, create_database

from .conftest import CONCERTS, SINGERS

PASSWORD = "s3cret-pw"
PREFIX = "sqltune_eval_"  # server database = PREFIX + db_id


def server_statements() -> list[str]:
    """The music database of tests/evaluate/conftest.py in SQL both servers run."""
    singers = ", ".join(f"({i}, '{name}', '{country}', {age})" for i, name, country, age in SINGERS)
    concerts = ", ".join(f"({i}, {singer}, {year}, '{venue}')" for i, singer, year, venue in CONCERTS)
    return [
        "CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name VARCHAR(40), country VARCHAR(40), age INTEGER)",
        "CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(singer_id),"
        " year INTEGER, venue VARCHAR(40))",
        f"INSERT INTO singer VALUES {singers}",
        f"INSERT INTO concert VALUES {concerts}",
    ]


@pytest.fixture
def music(server_url, bench):
    """(URL template on the server, db_dir, tables.json, write) for the music database on both."""
    create_database(server_url, PREFIX + "music", server_statements())
    db_dir, tables, write = bench
    return server_url + PREFIX + "{db_id}", db_dir, tables, write


# (gold, prediction, EX): every comparison rule, in SQL that SQLite and both servers run alike
CASES = [
    ("SELECT name FROM singer WHERE age > 40", "SELECT name FROM singer WHERE age > 40", 1),
    ("SELECT count(*) FROM singer WHERE country = 'France'", "SELECT count(*) FROM singer", 0),
    ("SELECT name, age FROM singer", "SELECT age, name FROM singer", 1),  # columns in any order
    ("SELECT name FROM singer ORDER BY age DESC, name", "SELECT name FROM singer ORDER BY age, name", 0),
    ("SELECT name FROM singer WHERE country = 'France'", "SELECT name FROM singer ORDER BY name", 0),
    (  # order counts only when the gold orders
        "SELECT name FROM singer WHERE country = 'France'",
        "SELECT name FROM singer WHERE country = 'France' ORDER BY name DESC",
        1,
    ),
    ("SELECT DISTINCT country FROM singer", "SELECT country FROM singer", 1),  # DISTINCT dropped
    ("SELECT age FROM singer", "SELECT age FROM singer GROUP BY age", 0),  # bags: duplicates count
    ("SELECT name FROM singer WHERE age > 40", "SELECT name FROM singer WHERE age > 45", 0),  # plug_value
    (
        "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id WHERE T2.year = 2015",
        "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM concert WHERE year = 2015)",
        1,
    ),
    ("SELECT max(age) FROM singer", "SELECT nme FROM singer", 0),  # the prediction fails
    ("SELECT venue FROM concert WHERE year = 2015", "", 0),  # empty prediction
]


def score(music, golds: list[str], preds: list[str], on_server: bool, **options) -> dict:
    url, db_dir, tables, write = music
    gold = write("gold.txt", [f"{sql}\tmusic" for sql in golds])
    pred = write("pred.txt", preds)
    where = {"db_url": url} if on_server else {"db_dir": db_dir, "tables": tables}
    return evaluate(
        pred, gold, workers=options.pop("workers", 1), timeout=options.pop("timeout", 5), **where, **options
    )


@pytest.mark.parametrize("plug_value", [False, True])
def test_ex_agrees_with_sqlite_example_by_example(music, plug_value):
    golds, preds, expected = (list(column) for column in zip(*CASES))
    if plug_value:
        expected[8] = 1  # the gold's 40 plugged into the prediction's slot
    on_sqlite = score(music, golds, preds, on_server=False, plug_value=plug_value)
    on_server = score(music, golds, preds, on_server=True, plug_value=plug_value)
    assert [row["exec"] for row in on_sqlite["examples"]] == expected
    assert [row["exec"] for row in on_server["examples"]] == expected
    assert not any(row["gold_failed"] for row in on_server["examples"])
    level = on_server["summary"]["levels"]["all"]
    assert level["gold_failed_on_server"] == 0 and level["exec"]["count"] == len(CASES)
    # no SQLite folder: EX only, and the report says why there is no EM
    assert on_server["settings"]["etype"] == "exec" and level["exact"] is None
    assert "exact match not computed" in on_server["settings"]["exact_match"]


def test_em_and_hardness_come_from_the_sqlite_files_when_db_dir_is_given(music):
    url, db_dir, tables, write = music
    gold = write("gold.txt", [f"{g}\tmusic" for g, _, _ in CASES])
    pred = write("pred.txt", [p for _, p, _ in CASES])
    both = evaluate(pred, gold, db_dir, tables, db_url=url, workers=1)
    sqlite = evaluate(pred, gold, db_dir, tables, workers=1)
    for key in ("exec", "exact", "hardness"):
        assert [r[key] for r in both["examples"]] == [r[key] for r in sqlite["examples"]], key
    assert both["settings"]["etype"] == "all" and both["settings"]["database_variant"].startswith(
        ("postgresql server", "mysql server")
    )


def test_writing_predictions_score_0_and_change_nothing(music):
    url = music[0].format(db_id="music")
    before = checksum(url)
    golds = ["SELECT name FROM singer", "SELECT count(*) FROM concert", "SELECT name FROM singer", "SELECT 1"]
    preds = [
        "DROP TABLE singer",
        "DELETE FROM concert",
        "SELECT name FROM singer; DROP TABLE singer",
        "UPDATE singer SET age = 0",
    ]
    golds, preds = [*golds, "SELECT count(*) FROM singer"], [*preds, "SELECT count(*) FROM singer"]
    report = score(music, golds, preds, on_server=True)
    # The official rules keep only the first statement (DISTINCT removal goes through sqlparse),
    # so the third is scored as its SELECT, as on SQLite; sent whole, the server's guard refuses it.
    assert [row["exec"] for row in report["examples"]] == [0, 0, 1, 0, 1]
    assert all(report["examples"][i]["error"] for i in (0, 1, 3))
    whole = score(music, golds, preds, on_server=True, keep_distinct=True)
    assert [row["exec"] for row in whole["examples"]] == [0, 0, 0, 0, 1]
    assert checksum(url) == before


def test_a_slow_prediction_times_out_and_the_run_goes_on(music):
    sleep = "pg_sleep(1)" if music[0].startswith("postgresql") else "SLEEP(1)"
    golds = ["SELECT name FROM singer", "SELECT name FROM singer WHERE age > 40"]
    preds = [f"SELECT name, {sleep} FROM singer", "SELECT name FROM singer WHERE age > 40"]
    report = score(music, golds, preds, on_server=True, timeout=1)
    slow, after = report["examples"]
    assert (slow["exec"], slow["error"]) == (0, "timeout")
    assert after["exec"] == 1


def test_gold_sql_the_server_rejects_is_counted_apart_not_scored(music, tmp_path, capsys):
    url, db_dir, tables, write = music
    # GLOB is SQLite's own: both servers reject it, so the example says nothing about the prediction
    golds = ["SELECT name FROM singer WHERE name GLOB 'A*'", "SELECT name FROM singer WHERE age > 40"]
    gold = write("gold.txt", [f"{sql}\tmusic" for sql in golds])
    pred = write("pred.txt", ["SELECT name FROM singer WHERE name LIKE 'A%'", "SELECT name FROM singer"])
    on_sqlite = evaluate(pred, gold, db_dir, tables, workers=1)
    assert [row["exec"] for row in on_sqlite["examples"]] == [1, 0]
    output = tmp_path / "report.json"
    assert (
        main(["eval", "--pred", str(pred), "--gold", str(gold), "--db-url", url, "--output", str(output)])
        == 0
    )
    report = json.loads(output.read_text())
    failed, scored = report["examples"]
    assert failed["exec"] is None and failed["gold_failed"] is True
    assert failed["error"].startswith("gold query failed on ")
    assert scored["exec"] == 0 and scored["gold_failed"] is False
    level = report["summary"]["levels"]["all"]
    assert level["gold_failed_on_server"] == 1 and level["count"] == 2
    assert level["exec"] == {"correct": 0, "count": 1, "rate": 0.0}
    err = capsys.readouterr().err
    assert "gold failed on server" in err and "EX is over the 1 examples whose gold query ran" in err
    assert "exact match not computed" in err


def test_bird_on_a_server(music):
    url, _, _, write = music
    gold = [
        {"question": "q0", "evidence": "", "SQL": "SELECT name FROM singer WHERE age > 40", "db_id": "music", "difficulty": "simple"},
        {"question": "q1", "evidence": "", "SQL": "SELECT name, age FROM singer", "db_id": "music", "difficulty": "moderate"},
        {"question": "q2", "evidence": "", "SQL": "SELECT name FROM singer WHERE name GLOB 'A*'", "db_id": "music", "difficulty": "simple"},
    ]  # fmt: skip
    preds = {
        "0": "SELECT name FROM singer WHERE age > 40 UNION ALL SELECT 'Bob'\t----- bird -----\tmusic",
        "1": "SELECT age, name FROM singer\t----- bird -----\tmusic",  # columns swapped: wrong for BIRD
        "2": "SELECT name FROM singer\t----- bird -----\tmusic",
    }
    gold_file = write("dev.json", [json.dumps(gold)])
    pred_file = write("predict_dev.json", [json.dumps(preds)])
    report = evaluate(pred_file, gold_file, db_url=url, format="bird", ves_repeats=2, workers=1)
    rows = report["examples"]
    assert [r["exec"] for r in rows] == [1, 0, None]
    assert rows[0]["reward"] in (0.25, 0.5, 0.75, 1.0, 1.25) and rows[1]["reward"] == 0
    assert rows[2]["gold_failed"] and rows[2]["reward"] is None
    levels = report["summary"]["levels"]
    assert levels["simple"]["gold_failed_on_server"] == 1 and levels["all"]["exec"]["count"] == 2


def test_worker_processes_open_their_own_connections(music):
    golds, preds, expected = (list(column) for column in zip(*CASES))
    times = 4  # 48 examples: two worker processes
    one = score(music, golds * times, preds * times, on_server=True, workers=1)
    two = score(music, golds * times, preds * times, on_server=True, workers=2)
    assert two["settings"]["workers"] == 2
    assert [r["exec"] for r in two["examples"]] == [r["exec"] for r in one["examples"]] == expected * times


def password_url(music) -> str:
    """The music URL template with a password: PostgreSQL's test cluster trusts every login (the
    password is sent and ignored); on MariaDB a reader with that password is created."""
    import sqlalchemy as sa

    url = music[0]
    scheme, rest = url.split("://")
    user, host = rest.split("@")
    if scheme == "postgresql":
        return f"{scheme}://{user}:{PASSWORD}@{host}"
    engine = sa.create_engine(with_driver(url.replace("{db_id}", "music")))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE USER IF NOT EXISTS 'sqltune_eval_reader'@'%%' IDENTIFIED BY '{PASSWORD}'"
        )
        conn.exec_driver_sql(f"GRANT SELECT ON {PREFIX}music.* TO 'sqltune_eval_reader'@'%%'")
    engine.dispose()
    return f"{scheme}://sqltune_eval_reader:{PASSWORD}@{host}"


def test_the_password_is_hidden_in_the_output_and_the_report(music, tmp_path, capsys):
    url = password_url(music)
    _, db_dir, tables, write = music
    gold = write(
        "gold.txt", ["SELECT name FROM singer\tmusic", "SELECT name FROM singer WHERE name GLOB 'A*'\tmusic"]
    )
    pred = write("pred.txt", ["SELECT name FROM singer", "SELECT nme FROM singer"])
    output = tmp_path / "report.json"
    argv = ["eval", "--pred", str(pred), "--gold", str(gold), "--db-url", url, "--output", str(output)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    text = output.read_text()
    assert PASSWORD not in printed.out + printed.err and PASSWORD not in text
    report = json.loads(text)
    assert report["settings"]["db_url"] == url.replace(PASSWORD, "***")
    assert f"database: {report['settings']['db_url']}" in printed.err
    assert report["examples"][0]["exec"] == 1  # the password did log in
    # a database that is not there: one line, exit code 2, still no password
    missing = url.replace(PREFIX, "sqltune_missing_")
    assert main([*argv[:5], "--db-url", missing]) == 2
    err = capsys.readouterr().err
    assert "database not reachable on the server" in err and "music" in err
    assert PASSWORD not in err and len(err.strip().splitlines()) == 1


def test_command_line_errors(music, capsys):
    url, db_dir, tables, write = music
    gold = write("gold.txt", ["SELECT name FROM singer\tmusic"])
    pred = write("pred.txt", ["SELECT name FROM singer"])
    base = ["eval", "--pred", str(pred), "--gold", str(gold)]
    assert main(base) == 2
    assert "--db-url" in capsys.readouterr().err
    assert main([*base, "--db-url", url, "--etype", "match"]) == 2
    assert "exact match not computed" in capsys.readouterr().err
    assert main([*base, "--db-url", "sqlite:///x.sqlite"]) == 2
    assert "PostgreSQL or MySQL/MariaDB" in capsys.readouterr().err
    assert main([*base, "--db-url", url, "--etype", "exec", "--timeout", "3"]) == 0
    assert main([*base, "--db-url", url, "--db-dir", str(db_dir), "--tables", str(tables)]) == 0
    err = capsys.readouterr().err
    assert "exact match (EM)" in err and "hardness and EM from the SQLite files" in err
