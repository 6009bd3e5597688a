"""Execution match rules (test-suite semantics) and the evaluator's robustness on real SQLite files."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from sqltune.errors import DataError
from sqltune.evaluate import evaluate
from sqltune.evaluate.execution import plugged_predictions, remove_distinct, results_match

from .conftest import build_db

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
MILLIONS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000000) SELECT x FROM c"


def run(bench, golds: list[str], preds: list[str], **options) -> dict:
    db_dir, tables, write = bench
    gold = write("gold.txt", [f"{sql}\tmusic" for sql in golds])
    pred = write("pred.txt", preds)
    return evaluate(pred, gold, db_dir, tables, workers=options.pop("workers", 1), **options)


def test_result_comparison_rules():
    assert results_match(
        [(1, "a"), (2, "b")], [("b", 2), ("a", 1)], ordered=False
    )  # rows and columns permuted
    assert not results_match([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], ordered=True)
    assert not results_match([(1,), (1,), (2,)], [(1,), (2,), (2,)], ordered=False)  # bags, not sets
    assert results_match([], [], ordered=False) and not results_match([(1,)], [], ordered=False)
    assert results_match([(1,)], [(1.0,)], ordered=False)
    # The official quick check sorts each row's values by text and type first: 1 and 1.5 sort
    # differently from 1.0 and 1.5, so these equal rows are judged different, as officially.
    assert not results_match([(1, 1.5)], [(1.0, 1.5)], ordered=False)


def test_distinct_removal_and_value_plugging():
    assert remove_distinct("SELECT DISTINCT name FROM t") == "SELECT  name FROM t"
    assert (
        remove_distinct("SELECT a FROM t; SELECT DISTINCT b FROM t") == "SELECT a FROM t; "
    )  # first statement only
    candidates = list(
        plugged_predictions("SELECT a FROM t WHERE b = 'x' AND c > 3", "SELECT a FROM t WHERE b = '1'")
    )
    assert sorted(candidates) == ["select a from t where b = 'x'", "select a from t where b = 3"]


def test_execution_match_on_a_database(bench):
    golds = [
        "SELECT name, age FROM singer",
        "SELECT name FROM singer ORDER BY age",
        "SELECT country FROM singer",
        "SELECT name FROM singer WHERE country = 'France'",
        "SELECT name FROM singer WHERE country = 'France'",
    ]
    preds = [
        "SELECT age, name FROM singer",  # columns in another order: same result
        "SELECT name FROM singer ORDER BY age DESC",  # the gold orders, so order counts
        "SELECT DISTINCT country FROM singer",  # DISTINCT removed before comparing
        "SELECT name FROM singer WHERE country = 'Spain'",  # wrong value
        "SELECT name FROM singer WHERE country = 'value'",  # a placeholder ('value' becomes '1')
    ]
    plain = run(bench, golds, preds)
    assert [row["exec"] for row in plain["examples"]] == [1, 0, 1, 0, 0]
    plugged = run(bench, golds, preds, plug_value=True)
    assert [row["exec"] for row in plugged["examples"]] == [1, 0, 1, 1, 1]
    kept = run(bench, golds, preds, keep_distinct=True)
    assert [row["exec"] for row in kept["examples"]] == [1, 0, 0, 0, 0]
    assert plain["examples"][4]["pred"] == "SELECT name FROM singer WHERE country = '1'"


def test_every_sqlite_file_in_the_folder_is_a_test_database(bench):
    db_dir, _, _ = bench
    golds, preds = ["SELECT name FROM singer WHERE age > 40"], ["SELECT name FROM singer WHERE name != 'Ann'"]
    assert run(bench, golds, preds)["examples"][0]["exec"] == 1
    other = [
        (1, "Ann", "France", 30),
        (2, "Bob", "Spain", 20),
        (3, "Cid", "France", 52),
        (4, "Dee", "Peru", 45),
    ]
    build_db(db_dir / "music" / "music_variant.sqlite", singers=other)
    report = run(bench, golds, preds)
    assert report["examples"][0]["exec"] == 0
    assert report["settings"]["database_variant"].startswith("test-suite (2 databases")


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE singer",
        "DELETE FROM singer",
        "UPDATE singer SET age = 0",
        "ATTACH DATABASE 'other.sqlite' AS other",
        "PRAGMA writable_schema = 1",
        "VACUUM INTO 'copy.sqlite'",
    ],
)
def test_predictions_cannot_change_any_file(bench, sql, tmp_path, monkeypatch):
    db_dir, tables, write = bench
    monkeypatch.chdir(tmp_path)
    gold, pred = write("gold.txt", ["SELECT name FROM singer\tmusic"]), write("pred.txt", [sql])
    database = db_dir / "music" / "music.sqlite"
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    files_before = sorted(tmp_path.rglob("*"))
    row = evaluate(pred, gold, db_dir, tables, workers=1)["examples"][0]
    assert row["exec"] == 0 and row["error"]
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    assert sorted(tmp_path.rglob("*")) == files_before


def test_a_runaway_query_is_stopped_and_a_huge_result_is_not_read(bench):
    start = time.perf_counter()
    report = run(
        bench, ["SELECT count(*) FROM singer", "SELECT name FROM singer"], [ENDLESS, MILLIONS], timeout=0.5
    )
    assert time.perf_counter() - start < 10
    slow, huge = report["examples"]
    assert (slow["exec"], slow["error"]) == (0, "timeout")
    assert (huge["exec"], huge["error"]) == (0, None)  # read only until it had more rows than the gold
    gold_too_big = run(bench, [MILLIONS], ["SELECT 1"], max_rows=1000)["examples"][0]
    assert gold_too_big["exec"] == 0 and "too many rows" in gold_too_big["error"]


def test_empty_prediction_line_is_scored_zero(bench):
    report = run(bench, ["SELECT name FROM singer", "SELECT age FROM singer"], ["", "SELECT age FROM singer"])
    empty, fine = report["examples"]
    assert (empty["exact"], empty["exec"], empty["pred_parse_ok"], empty["error"]) == (
        0,
        0,
        False,
        "empty prediction",
    )
    assert (fine["exact"], fine["exec"]) == (1, 1)
    assert report["summary"]["errors"] == {"empty prediction": 1}


def test_input_problems_are_named(bench, tmp_path):
    db_dir, tables, write = bench
    gold = write("gold.txt", ["SELECT name FROM singer\tmusic", "SELECT age FROM singer\tmusic"])
    with pytest.raises(DataError, match=r"has 1 prediction lines but the gold has 2"):
        evaluate(write("short.txt", ["SELECT 1"]), gold, db_dir, tables)
    preds = write("pred2.txt", ["SELECT 1", "SELECT 2"])
    with pytest.raises(DataError, match=r"database not found for 1 db_id\(s\): nowhere"):
        evaluate(preds, write("g2.txt", ["SELECT 1\tmusic", "SELECT 1\tnowhere"]), db_dir, tables)
    build_db(db_dir / "other" / "other.sqlite")
    with pytest.raises(DataError, match=r"no entry for db_id\(s\) other"):
        evaluate(preds, write("g3.txt", ["SELECT 1\tmusic", "SELECT 1\tother"]), db_dir, tables)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"db_id": "music",')
    with pytest.raises(DataError, match=r"broken.json: malformed JSON at line 1"):
        evaluate(preds, gold, db_dir, broken)
    with pytest.raises(DataError, match=r"line 1: expected 'SQL<TAB>db_id'"):
        evaluate(preds, write("g4.txt", ["SELECT 1", "SELECT 2"]), db_dir, tables)


def test_jsonl_predictions_and_extraction(bench, tmp_path):
    db_dir, tables, write = bench
    gold = write(
        "gold.txt", ["SELECT name FROM singer WHERE age > 40\tmusic", "SELECT count(*) FROM concert\tmusic"]
    )
    rows = [
        {
            "index": 1,
            "db_id": "music",
            "sql": "Sure! Here it is:\n```sql\nSELECT count(*)\nFROM concert;\n```",
        },
        {"index": 0, "db_id": "music", "sql": "SELECT name FROM singer WHERE age > 40 -- older singers"},
    ]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = evaluate(pred, gold, db_dir, tables, workers=2, extract=True)
    assert [(r["exact"], r["exec"]) for r in report["examples"]] == [(1, 1), (1, 1)]
    assert report["examples"][1]["pred"] == "SELECT count(*) FROM concert"
    written = evaluate(pred, gold, db_dir, tables, workers=1)  # the default: scored as written
    assert written["examples"][1]["pred_parse_ok"] is False and written["examples"][1]["exec"] == 0
    rows[0]["db_id"] = "other"
    pred.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match="db_id 'other' but gold index 1 is on 'music'"):
        evaluate(pred, gold, db_dir, tables)
