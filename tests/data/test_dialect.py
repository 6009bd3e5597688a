"""`sqltune data ... dialect=postgres|mysql`: gold SQL transpiled from SQLite and checked on real servers.

One small SQLite database (`concerts`) is loaded into PostgreSQL and MariaDB with `sqltune db load`;
Spider-style queries over it are transpiled and checked by execution: some run as sqlglot writes
them, some only after sqltune's rules (names, text affinity, LIMIT in IN, GROUP BY, LIKE), and some
are dropped with the reason the check gives.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sqltune.cli import main
from sqltune.data.dialect import (
    TIES,
    DialectCheck,
    difference,
    error_class,
    normalise,
    to_dialect,
)
from sqltune.data.example import Example
from sqltune.data.introspect import schema_from_sqlite
from sqltune.data.sources import SourceData
from sqltune.data.transpile import ServerNames, TranspileError, column_type, identifier, tie_broken, transpile
from sqltune.db.load import load_database
from sqltune.errors import DataError, SqltuneWarning

DB_ID = "concerts"
SQLITE = [
    "CREATE TABLE singer (Singer_ID INTEGER PRIMARY KEY, Name TEXT, Country TEXT, Age INTEGER, "
    "Debut DATE, Year TEXT)",
    "INSERT INTO singer VALUES (1, 'Ann', 'France', 31, '2001-05-04', '2001'), "
    "(2, 'Bob', 'France', 45, '1995-01-20', '1995'), (3, 'cy', 'Spain', 25, '2010-09-30', '2010'), "
    "(4, 'Dee', 'Japan', 52, '1990-12-01', '1990')",
    "CREATE TABLE concert (Concert_ID INTEGER PRIMARY KEY, Concert_Name TEXT, Singer_ID INTEGER "
    'REFERENCES singer (Singer_ID), "Ticket Price" REAL, Theme TEXT)',
    "INSERT INTO concert VALUES (1, 'Spring', 1, 12.5, 'pop'), (2, 'Summer', 1, 30.0, NULL), "
    "(3, 'Autumn', 2, 20.25, 'rock'), (4, 'Winter', 3, 15.0, 'jazz')",
    "CREATE TABLE numbers (n INTEGER)",
    "INSERT INTO numbers VALUES " + ", ".join(f"({i})" for i in range(100)),
]
DIALECT_OF = {"postgres": "postgres", "mariadb": "mysql"}


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory) -> Path:
    """`<folder>/concerts/concerts.sqlite`: the Spider layout."""
    path = tmp_path_factory.mktemp("dialect") / "database" / DB_ID / f"{DB_ID}.sqlite"
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    for statement in SQLITE:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def server(request, sqlite_db) -> tuple[str, str]:
    """(dialect, URL template with {db_id}) of a server holding the loaded `concerts` database."""
    base = request.getfixturevalue(f"{request.param}_url")
    load_database(sqlite_db, base + DB_ID, DB_ID)
    return DIALECT_OF[request.param], base + "{db_id}"


@pytest.fixture(scope="module")
def schema(sqlite_db):
    return schema_from_sqlite(sqlite_db, DB_ID)


def check(server, schema, sql, timeout=30.0):
    dialect, url = server
    with DialectCheck(dialect, url, timeout) as checker:
        return checker.check(schema, sql)


# ---- transpiled and kept -------------------------------------------------------------------------
KEPT = {
    "count": ("SELECT count(*) FROM singer", {"postgres": "COUNT(*)", "mysql": "COUNT(*)"}),
    "double-quoted string": (
        'SELECT Name FROM singer WHERE Country = "France"',
        {"postgres": "Country = 'France'", "mysql": "Country = 'France'"},
    ),
    "string concatenation": (
        "SELECT Name || ' from ' || Country FROM singer WHERE Singer_ID = 1",
        {"postgres": "Name || ' from ' || Country", "mysql": "CONCAT(Name, ' from ', Country)"},
    ),
    "ifnull": (
        "SELECT Concert_Name, IFNULL(Theme, 'none') FROM concert",
        {"postgres": "COALESCE(Theme, 'none')", "mysql": "COALESCE(Theme, 'none')"},
    ),
    "strftime": (
        "SELECT Name FROM singer WHERE strftime('%Y', Debut) = '2001'",
        {"postgres": "TO_CHAR(CAST(Debut AS TIMESTAMP), 'YYYY')", "mysql": "DATE_FORMAT(Debut, '%Y')"},
    ),
    "number compared with a text column": (
        "SELECT count(*) FROM singer WHERE Year > 2000",
        {"postgres": "Year > '2000'", "mysql": "Year > '2000'"},
    ),
    "limit in an IN subquery, quoted name": (
        'SELECT Name FROM singer WHERE Singer_ID IN (SELECT Singer_ID FROM concert ORDER BY "Ticket Price" '
        "DESC LIMIT 1)",
        {
            "postgres": 'IN (SELECT Singer_ID FROM concert ORDER BY "ticket price" DESC LIMIT 1)',
            "mysql": "IN (SELECT * FROM (SELECT Singer_ID FROM concert ORDER BY `ticket price` DESC LIMIT 1) "
            "AS limited)",
        },
    ),
    "table names in another case": (
        "SELECT T1.Name FROM SINGER AS T1 JOIN Concert AS t2 ON T1.Singer_ID = T2.Singer_ID WHERE t2.Theme = 'rock'",
        {"postgres": "FROM SINGER AS T1 JOIN Concert AS t2", "mysql": "FROM singer AS T1 JOIN concert AS t2"},
    ),
    "derived table without alias": (
        "SELECT count(*) FROM (SELECT Country FROM singer GROUP BY Country)",
        {"postgres": "GROUP BY Country) AS derived", "mysql": "GROUP BY Country) AS derived"},
    ),
}


@pytest.mark.parametrize("name", list(KEPT))
def test_transpiled_query_is_kept(server, schema, name):
    sql, expected = KEPT[name]
    outcome = check(server, schema, sql)
    assert outcome.sql is not None, f"{name}: {outcome.reason}: {outcome.detail}"
    assert expected[server[0]] in outcome.sql, outcome.sql


def test_group_by_with_a_column_outside_it_is_grouped_on_postgres(server, schema):
    sql = (
        "SELECT T1.Name, count(*) FROM singer AS T1 JOIN concert AS T2 ON T1.Singer_ID = T2.Singer_ID "
        "GROUP BY T2.Singer_ID"
    )
    outcome = check(server, schema, sql)
    assert outcome.sql is not None, outcome
    if server[0] == "postgres":  # T1.Name does not depend on T2's key: PostgreSQL refuses it as written
        assert outcome.careful and "GROUP BY T2.Singer_ID, T1.Name" in outcome.sql
    else:
        assert not outcome.careful and outcome.sql.endswith("GROUP BY T2.Singer_ID")


def test_like_ignores_case_as_in_sqlite(server, schema):
    outcome = check(server, schema, "SELECT Name FROM singer WHERE Name LIKE 'C%'")  # finds 'cy'
    assert outcome.sql is not None and outcome.careful, outcome
    assert {"postgres": "Name ILIKE 'C%'", "mysql": "LOWER(Name) LIKE LOWER('C%')"}[server[0]] in outcome.sql


# ---- dropped, with the reason --------------------------------------------------------------------
def test_integer_division_differs_on_mysql(server, schema):
    outcome = check(server, schema, "SELECT Age / 2 FROM singer WHERE Singer_ID = 1")  # 15 on SQLite
    if server[0] == "postgres":
        assert outcome.sql == "SELECT Age / 2 FROM singer WHERE Singer_ID = 1"
    else:
        assert (outcome.sql, outcome.reason) == (None, "different result"), outcome
        assert outcome.detail.startswith("values")


def test_bare_column_beside_an_aggregate(server, schema):
    outcome = check(server, schema, "SELECT max(Age), Name FROM singer")  # SQLite: the oldest's name
    expected = {"postgres": "server error (GROUP BY strictness)", "mysql": "different result"}
    assert (outcome.sql, outcome.reason) == (None, expected[server[0]]), outcome


def test_sql_that_fails_on_sqlite_is_dropped(server, schema):
    outcome = check(server, schema, "SELECT nothing FROM singer")
    assert (outcome.sql, outcome.reason) == (None, "gold SQL fails on SQLite")


def test_slow_query_on_the_server_times_out(server, schema):
    outcome = check(server, schema, "SELECT count(*) FROM numbers AS a, numbers AS b, numbers AS c", 0.001)
    assert (outcome.sql, outcome.reason) == (None, "timeout"), outcome


def test_ties_are_told_apart_from_other_differences(server, schema):
    # Japan and Spain both have one singer: which comes first is up to each engine.
    outcome = check(server, schema, "SELECT Country FROM singer GROUP BY Country ORDER BY count(*) LIMIT 1")
    assert outcome.sql is not None or outcome.reason == TIES, outcome


def test_missing_server_database_is_one_clear_error(server, schema):
    dialect, url = server
    missing = DialectCheck(dialect, url.replace("{db_id}", "nowhere_{db_id}"))
    with missing, pytest.raises(DataError, match="database concerts on .*nowhere_concerts.*sqltune db load"):
        missing.check(schema, "SELECT 1")


# ---- whole datasets ------------------------------------------------------------------------------
def test_history_is_transpiled_and_a_failed_turn_drops_the_later_ones(server, schema):
    first = 'SELECT Name FROM singer WHERE Country = "France"'
    examples = [
        Example("0_0", DB_ID, "French singers?", first),
        Example(
            "0_1",
            DB_ID,
            "How old?",
            'SELECT Age FROM singer WHERE Country = "France"',
            history=[("q", first)],
        ),
        Example(
            "1_1",
            DB_ID,
            "Then?",
            "SELECT count(*) FROM singer",
            history=[("q", "SELECT nothing FROM singer")],
        ),
    ]
    data = SourceData(examples, {DB_ID: schema}, read=3)
    converted, report = to_dialect(data, server[0], server[1])
    assert [e.id for e in converted.examples] == ["0_0", "0_1"]
    assert converted.examples[1].history == [("q", "SELECT Name FROM singer WHERE Country = 'France'")]
    assert report.skipped == {"an earlier turn's SQL not kept": 1}
    assert sum(converted.skipped.values()) == 1 and report.checked == 3 and report.kept == 2
    with pytest.raises(DataError, match="strict=true"):
        to_dialect(data, server[0], server[1], strict=True)


@pytest.fixture(scope="module")
def spider_folder(sqlite_db) -> Path:
    """A Spider-style folder over the concerts database: tables.json, dev.json, database/."""
    folder = sqlite_db.parents[2]
    (folder / "tables.json").write_text(json.dumps([schema_from_sqlite(sqlite_db, DB_ID).to_spider()]))
    questions = [
        ("Which singers are from France?", 'SELECT Name FROM singer WHERE Country = "France"'),
        ("How many concerts had no theme?", "SELECT count(*) FROM concert WHERE IFNULL(Theme, '') = ''"),
        ("Oldest age and a name?", "SELECT max(Age), Name FROM singer"),
    ]
    (folder / "dev.json").write_text(
        json.dumps([{"db_id": DB_ID, "question": q, "query": s} for q, s in questions])
    )
    return folder


def test_cli_end_to_end_on_postgres(spider_folder, postgres_url, sqlite_db, tmp_path, capsys, monkeypatch):
    from sqltune.data.prompts import build_prompt
    from sqltune.data.records import load_dataset

    monkeypatch.setenv("COLUMNS", "250")  # the summary table on one line per row

    load_database(sqlite_db, postgres_url + DB_ID, DB_ID)
    url = postgres_url.replace("postgres@", "postgres:s3cret@") + "{db_id}"  # trust auth ignores it
    args = [f"data_dir={spider_folder}", "split=dev", "prompt_format=ddl", f"output_dir={tmp_path}"]
    assert main(["data", "source=spider", *args, "dialect=postgres", f"db_url={url}"]) == 0
    err = capsys.readouterr().err
    assert "1 PostgreSQL: server error (GROUP BY strictness)" in err and "2 of 3 kept" in err
    records = [json.loads(line) for line in (tmp_path / "spider_dev.jsonl").read_text().splitlines()]
    assert [r["output"] for r in records] == [
        "SELECT Name FROM singer WHERE Country = 'France'",
        "SELECT COUNT(*) FROM concert WHERE COALESCE(Theme, '') = ''",
    ]
    assert records[0]["instruction"].startswith("You are a PostgreSQL expert.")
    assert "write one PostgreSQL query" in records[0]["instruction"]
    assert '"ticket price" DOUBLE PRECISION' in records[0]["instruction"]
    registry = (tmp_path / "dataset_info.json").read_text()
    assert "s3cret" not in registry and "s3cret" not in err
    info = json.loads(registry)["spider_dev"]["sqltune"]
    assert info["prompt"]["dialect"] == "postgres"
    assert info["dialect"]["skipped"] == {"server error (GROUP BY strictness)": 1}
    assert info["dialect"]["db_url"] == postgres_url.replace("postgres@", "postgres:***@") + "{db_id}"
    # predict rebuilds the prompt from the registry: the same text
    dataset = load_dataset(tmp_path, "spider_dev")
    assert dataset.prompt_args.dialect == "postgres"
    rebuilt = build_prompt(dataset.examples[0], dataset.schemas[DB_ID], dataset.prompt_args)
    assert rebuilt.instruction == records[0]["instruction"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["dialect=postgres"], "dialect=postgres needs db_url="),
        (["dialect=oracle"], "dialect: unknown 'oracle', choose one of sqlite, postgres, mysql"),
        (["db_url=postgresql://u@h/{db_id}"], "db_url: only used with dialect=postgres or dialect=mysql"),
        (["dialect=mysql", "db_url=postgresql://u:pw@h/{db_id}"], "is not a MySQL URL"),
    ],
)
def test_cli_errors_are_one_line(spider_folder, tmp_path, capsys, extra, message):
    args = [
        "data",
        "source=spider",
        f"data_dir={spider_folder}",
        "split=dev",
        f"output_dir={tmp_path}",
        *extra,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "pw@" not in err


def test_cli_database_not_on_the_server(spider_folder, postgres_url, tmp_path, capsys):
    url = postgres_url + "nowhere_{db_id}"
    args = ["data", "source=spider", f"data_dir={spider_folder}", "split=dev", f"output_dir={tmp_path}"]
    assert main([*args, "dialect=postgres", f"db_url={url}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "database concerts on" in err and "nowhere_concerts" in err


def test_bird_mini_dev_dialect_files_are_used_as_written(bird_dir, tmp_path, capsys):
    mini_dev = bird_dir / "mini_dev"
    args = [
        "data",
        "source=bird",
        f"data_dir={mini_dev}",
        "split=dev",
        "dialect=mysql",
        f"output_dir={tmp_path}",
    ]
    with pytest.warns(SqltuneWarning, match="dev_databases does not exist"):  # no BIRD databases here
        assert main(args) == 0
    assert "not checked by execution" in capsys.readouterr().err.replace("\n", " ")
    records = [json.loads(line) for line in (tmp_path / "bird_dev.jsonl").read_text().splitlines()]
    gold = json.loads((mini_dev / "mini_dev_mysql.json").read_text())
    assert [r["output"] for r in records] == [g["SQL"] for g in gold]
    assert "act as a MySQL terminal" in records[0]["instruction"]
    info = json.loads((tmp_path / "dataset_info.json").read_text())["bird_dev"]["sqltune"]["dialect"]
    assert info["kept"] == 500 and "mini_dev_mysql.json" in info["gold"] and "db_url" not in info


# ---- without a server ----------------------------------------------------------------------------
NAMES = ServerNames(
    tables={"singer": "singer", "concert": "concert", "order": "order"},
    columns={
        "name": "name",
        "country": "country",
        "year": "year",
        "singer_id": "singer_id",
        "ticket price": "ticket price",
    },
    kinds={("singer", "year"): "text", ("singer", "name"): "text", ("singer", "singer_id"): "other"},
)


@pytest.mark.parametrize(
    "dialect, sql, expected",
    [
        ("postgres", 'SELECT "Name" FROM Singer', "SELECT name FROM Singer"),
        ("postgres", 'SELECT "Ticket Price" FROM "Order"', 'SELECT "ticket price" FROM "order"'),
        ("mysql", 'SELECT "Ticket Price" FROM "Order"', "SELECT `ticket price` FROM `order`"),
        (
            "mysql",
            "SELECT T1.name FROM Singer AS T1 WHERE t1.Year IN (2001, -5)",
            "SELECT T1.name FROM singer AS T1 WHERE T1.Year IN ('2001', '-5')",
        ),
        (
            "postgres",
            "SELECT name FROM singer WHERE singer_id = 3 AND year BETWEEN 1 AND 2",
            "SELECT name FROM singer WHERE singer_id = 3 AND year BETWEEN '1' AND '2'",
        ),
        (
            "postgres",
            "SELECT avg(year) FROM singer",
            "SELECT AVG(CAST(year AS DOUBLE PRECISION)) FROM singer",
        ),
        (
            "postgres",
            'SELECT name FROM singer WHERE name = "Name"',
            "SELECT name FROM singer WHERE name = name",
        ),
        (
            "postgres",
            'SELECT name AS "who" FROM singer ORDER BY "who"',
            'SELECT name AS "who" FROM singer ORDER BY "who"',
        ),
    ],
)
def test_names_and_text_affinity(dialect, sql, expected):
    assert transpile(sql, dialect, NAMES) == expected


def test_plain_and_careful_versions():
    sql = "SELECT name FROM singer WHERE name LIKE 'a%' ORDER BY singer_id / 2 DESC"
    assert (
        transpile(sql, "postgres")
        == "SELECT name FROM singer WHERE name LIKE 'a%' ORDER BY singer_id / 2 DESC"
    )
    assert transpile(sql, "postgres", careful=True) == (
        "SELECT name FROM singer WHERE name ILIKE 'a%' ORDER BY singer_id / NULLIF(2, 0) DESC NULLS LAST"
    )
    assert "NULLS" not in transpile(sql, "mysql", careful=True)  # MySQL puts NULLs first, as SQLite does


def test_transpile_error_and_tie_breaking():
    with pytest.raises(TranspileError, match="sqlglot cannot read it"):
        transpile("SELECT name FROM singer WHERE", "postgres")
    assert (
        tie_broken("SELECT a, b FROM t ORDER BY c LIMIT 1") == "SELECT a, b FROM t ORDER BY c, 1, 2 LIMIT 1"
    )
    assert tie_broken("SELECT a FROM t") is None


def test_values_from_the_three_engines_compare_as_the_same_answer():
    import datetime
    import decimal

    sqlite_rows = [(1.6666666666666667, 3.0, "2001-05-04", "2001-05-04 10:00:00", 1, "3", b"x")]
    server_rows = [
        (
            decimal.Decimal("1.6667"),
            3,
            datetime.date(2001, 5, 4),
            datetime.datetime(2001, 5, 4, 10),
            True,
            3,
            memoryview(b"x"),
        ),
    ]
    assert difference(sqlite_rows, server_rows, ordered=False) is None
    assert normalise("03") == "03" and normalise("abc") == "abc"
    assert difference([(1,), (2,)], [(2,), (1,)], ordered=True) == "row order"
    assert difference([(1,)], [(1,), (1,)], ordered=False) == "row count"
    assert difference([(1.5,)], [(2.5,)], ordered=False) == "values"


def test_server_messages_have_a_class():
    assert error_class('column "x.y" must appear in the GROUP BY clause') == "GROUP BY strictness"
    assert error_class("operator does not exist: text = integer") == "type mismatch"
    assert (
        error_class("function strftime(unknown, text) does not exist") == "unknown function or argument types"
    )
    assert error_class("(1054, \"Unknown column 'x' in 'field list'\")") == "unknown table or column"
    assert error_class("This version of MariaDB doesn't yet support 'LIMIT & IN/ALL/ANY/SOME subquery'") == (
        "LIMIT in a subquery"
    )


def test_prompt_names_the_dialect_and_writes_its_ddl(schema):
    from sqltune.args import PromptArguments
    from sqltune.data.prompts import DBGPT_INSTRUCTION, build_prompt

    example = Example("0", DB_ID, "Who?", "SELECT 1")
    sqlite_prompt = build_prompt(example, schema, PromptArguments())
    assert sqlite_prompt.instruction.startswith(DBGPT_INSTRUCTION.split("{}")[0])  # DB-GPT-Hub's bytes
    dbgpt = build_prompt(example, schema, PromptArguments(dialect="postgres"))
    assert (
        "act as a PostgreSQL terminal" in dbgpt.instruction and "the PostgreSQL command" in dbgpt.instruction
    )
    mysql = build_prompt(example, schema, PromptArguments(dialect="mysql", prompt_format="ddl")).instruction
    assert mysql.startswith("You are a MySQL expert.") and "CREATE TABLE singer (" in mysql
    assert "`ticket price` DOUBLE" in mysql and "Debut DATE" in mysql
    compact = build_prompt(example, schema, PromptArguments(dialect="postgres", prompt_format="compact"))
    assert '"ticket price" DOUBLE PRECISION' in compact.instruction


def test_identifiers_and_types_as_db_load_creates_them():
    assert identifier("Singer", "postgres", table=True) == "Singer"  # folds to singer
    assert identifier("Singer", "mysql", table=True) == "singer"  # MySQL's table names keep case
    assert identifier("Singer_ID", "mysql") == "Singer_ID"
    assert identifier("Customer Name", "postgres") == '"customer name"'
    assert identifier("order", "mysql", table=True) == "`order`"
    assert column_type("varchar(20)", "postgres") == "VARCHAR(20)"
    assert column_type("bool", "mysql") == "INT"
    assert column_type("NUMERIC(10,2)", "postgres") == "DOUBLE PRECISION"
    assert column_type("blob", "postgres") == "BYTEA"
    assert column_type("datetime", "mysql") == "DATETIME"
    assert column_type("text", "sqlite") == "text"
