"""Execution-guided decoding on real PostgreSQL and MariaDB servers: `choose`, `predict db_url=`, `ask`.

The concert database of the prediction tests is built on each server too; the choice among the
same candidates must be the one made on the SQLite file, and hostile or slow candidates are
discarded without changing the server.
"""

from __future__ import annotations

import json

import pytest

from sqltune.args import GeneratingArguments
from sqltune.cli import main as cli
from sqltune.db import execute
from sqltune.files import read_jsonl
from sqltune.infer.answers import answer
from sqltune.infer.engine import Batch, Candidate
from sqltune.infer.guided import choose
from tests.infer.conftest import ROWS, write_concert_db
from tests.servers import create_database
from tests.tiny import TABLES

PASSWORD = "pw-never-shown"


def server_statements() -> list[str]:
    """tests/infer/conftest.py's concert database with column types both servers take."""
    statements = []
    for table, columns in TABLES.items():
        first = ROWS[table][0]
        types = [
            "INTEGER" if isinstance(v, int) else "NUMERIC(10,2)" if isinstance(v, float) else "VARCHAR(40)"
            for v in first
        ]
        statements.append(f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in zip(columns, types))})")
        values = ", ".join("(" + ", ".join(repr(v) for v in row) + ")" for row in ROWS[table])
        statements.append(f"INSERT INTO {table} VALUES {values}")
    return statements


@pytest.fixture
def concert(server_url, tmp_path):
    """(URL template on the server, the same database as a SQLite file)."""
    create_database(server_url, "sqltune_guided_concert_singer", server_statements())
    sqlite = write_concert_db(tmp_path / "concert_singer.sqlite")
    return server_url + "sqltune_guided_{db_id}", sqlite


CANDIDATE_SETS = [
    [
        "SELECT name FROM singer WHERE country = 'Spain'",
        "SELECT nme FROM singer",
        "SELECT name FROM singer WHERE country = 'France'",
        "SELECT name FROM singer WHERE age < 35 ORDER BY age",
    ],
    [
        "SELECT nme FROM singer",
        "SELECT name FROM singer WHERE age > 99",
        "SELECT name FROM singer WHERE country = 'Spain'",
        "SELECT name FROM singer WHERE country = 'France'",
        "SELECT name FROM singer WHERE age < 35 ORDER BY age",
    ],
    ["SELEC 1", "SELECT count(*) FROM singer", "SELECT count(*) FROM song"],
    # exact decimals on the servers, floats on SQLite: the same result either way
    [
        "SELECT avg(price) FROM ticket",
        "SELECT sum(price) / count(*) FROM ticket",
        "SELECT max(price) FROM ticket",
    ],
    ["SELECT name FROM singer WHERE age > 99", "SELECT name FROM singer WHERE age > 99 AND age < 5"],
    ["", "DROP TABLE singer", "SELECT * FROM nowhere"],
]


def kind(outcome: str) -> str:
    return outcome if outcome in ("rows", "empty", "empty answer") else "failed"


@pytest.mark.parametrize("rule", ["first", "vote"])
def test_guided_choice_on_a_server_is_the_choice_on_sqlite(concert, rule):
    url, sqlite = concert
    server = url.format(db_id="concert_singer")
    for sqls in CANDIDATE_SETS:
        on_sqlite = choose(sqls, sqlite, timeout=2, rule=rule)
        on_server = choose(sqls, server, timeout=2, rule=rule)
        assert (on_server.index, on_server.votes, on_server.reason) == (
            on_sqlite.index,
            on_sqlite.votes,
            on_sqlite.reason,
        ), sqls
        assert [kind(o) for o in on_server.outcomes] == [kind(o) for o in on_sqlite.outcomes]
    assert execute(server, "SELECT count(*) FROM singer").rows == [(3,)]  # the DROP changed nothing


def test_slow_and_writing_candidates_are_discarded_on_the_server(concert):
    server = concert[0].format(db_id="concert_singer")
    sleep = "pg_sleep(1)" if server.startswith("postgresql") else "SLEEP(1)"
    sqls = [
        f"SELECT name, {sleep} FROM singer",
        "DELETE FROM singer",
        "SELECT name FROM singer; DROP TABLE singer",
        "SELECT count(*) FROM singer",
    ]
    choice = choose(sqls, server, timeout=0.5, rule="vote")
    assert choice.index == 3 and choice.outcomes[0] == "timeout"
    assert all(o not in ("rows", "empty") for o in choice.outcomes[:3])
    assert execute(server, "SELECT count(*) FROM singer").rows == [(3,)]


class ScriptedEngine:
    """Stands in for the model: answers every prompt with the given candidate texts."""

    tokenizer = None

    def __init__(self, texts: list[list[str]]):
        self.texts = texts

    def generate(self, prompts, settings, candidates=1):
        yield Batch(
            list(range(len(prompts))),
            [[Candidate(text, 3) for text in self.texts[i]] for i in range(len(prompts))],
            0.01,
        )


def test_answers_are_chosen_by_running_the_candidates_on_the_server(concert):
    url = concert[0]
    settings = GeneratingArguments(decoding="execution_guided", num_candidates=3, guided_choice="vote")
    texts = [CANDIDATE_SETS[0][:3], CANDIDATE_SETS[3]]
    databases = [url.format(db_id="concert_singer")] * 2
    ((first, one), (second, two)) = next(answer(ScriptedEngine(texts), [[1], [2]], settings, databases))
    assert (first, one.sql, one.choice.reason) == (
        0,
        "SELECT name FROM singer WHERE country = 'Spain'",
        "most likely executable",
    )
    assert (second, two.sql, two.choice.votes) == (1, "SELECT avg(price) FROM ticket", 2)


def test_predict_runs_the_candidates_on_the_server(concert, diverse_model_dir, db_data_dir, tmp_path, capsys):
    url = concert[0]
    scheme, rest = url.split("://")
    if scheme == "postgresql":  # the test cluster trusts every login: the password is sent, not checked
        url = f"{scheme}://{rest.split('@')[0]}:{PASSWORD}@{rest.split('@')[1]}"
    out = tmp_path / "preds.jsonl"
    argv = [
        "predict",
        "max_new_tokens=6",
        "infer_dtype=float32",
        f"model_name_or_path={diverse_model_dir}",
        f"dataset_dir={db_data_dir}",
        "dataset=concert_dev",
        f"output={out}",
        "decoding=execution_guided",
        "num_candidates=3",
    ]
    assert cli([*argv, f"db_url={url}"]) == 0
    rows = read_jsonl(out)
    assert len(rows) == 6 and all(len(row["candidates"]) == 3 for row in rows)
    # the outcomes are the server's (the random model's text is refused by its guard), not SQLite's
    server, sqlite = url.format(db_id="concert_singer"), concert[1]
    recorded = [[c["outcome"] for c in row["candidates"]] for row in rows]
    sqls = [[c["sql"] for c in row["candidates"]] for row in rows]
    assert recorded == [choose(s, server, timeout=2).outcomes for s in sqls]
    assert recorded != [choose(s, sqlite, timeout=2).outcomes for s in sqls]
    printed = capsys.readouterr()
    assert "candidates run on" in printed.err and PASSWORD not in printed.out + printed.err
    assert PASSWORD not in json.dumps(rows)
    # without guided decoding nothing runs SQL: the key is refused, not ignored
    assert cli([*argv[:-2], f"output={tmp_path / 'other.jsonl'}", f"db_url={url}"]) == 2
    assert "decoding=execution_guided" in capsys.readouterr().err
    # a database the server does not have: one line before any model loads, no password
    missing = url.replace("sqltune_guided_", "sqltune_nowhere_")
    assert cli([*argv, "overwrite=true", f"db_url={missing}"]) == 2
    err = capsys.readouterr().err
    assert "database not reachable" in err and "concert_singer" in err and PASSWORD not in err


def test_ask_with_guided_decoding_on_a_server(concert, tiny_run, capsys):
    server = concert[0].format(db_id="concert_singer")
    argv = ["ask", "--db", server, f"run_dir={tiny_run}", "How many singers are there?", "max_new_tokens=8"]
    status = cli([*argv, "decoding=execution_guided", "num_candidates=2"])
    out, err = capsys.readouterr()
    assert status in (0, 1) and "needs each question's database" not in err  # the model is barely trained
    assert execute(server, "SELECT count(*) FROM singer").rows == [(3,)]
