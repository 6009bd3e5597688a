"""`sqltune eval` on the command line: options with dashes, the report file, errors on one line."""

import json

import pytest

from sqltune.cli import main
from sqltune.errors import SqltuneWarning
from sqltune.evaluate import evaluate
from sqltune.sql_extract import extract_sql


def eval_argv(pred, gold, db_dir, tables) -> list[str]:
    return [
        "eval",
        "--pred",
        str(pred),
        "--gold",
        str(gold),
        "--db-dir",
        str(db_dir),
        "--tables",
        str(tables),
    ]


def table_row(printed: str, name: str) -> list[str]:
    """The cells of the printed score table's row called `name`."""
    for line in printed.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if cells[0] == name:
            return cells[1:]
    raise AssertionError(f"no row {name!r} in:\n{printed}")


def test_eval_command_writes_the_report(bench, tmp_path, capsys):
    db_dir, tables, write = bench
    gold = write("gold.txt", ["SELECT name FROM singer\tmusic", "SELECT count(*) FROM concert\tmusic"])
    pred = write("pred.txt", ["SELECT name FROM singer", "SELECT count(*) FROM singer WHERE age > 40"])
    output = tmp_path / "out" / "results.json"
    argv = eval_argv(pred, gold, db_dir, tables)
    assert main([*argv, "--workers", "1", "--timeout", "5", "--plug-value", "--output", str(output)]) == 0
    captured = capsys.readouterr()
    assert "execution (EX)" in captured.err and "1 (0.500)" in captured.err
    report = json.loads(output.read_text())
    assert set(report) == {"settings", "summary", "examples"}
    assert report["settings"]["plug_value"] is True and report["settings"]["timeout"] == 5.0
    assert report["settings"]["evaluator_version"].startswith("sqltune ")
    assert report["settings"]["database_variant"] == "original (1 databases)"
    first = report["examples"][0]
    assert {"index", "db_id", "hardness", "exact", "exec", "pred_parse_ok", "error"} <= set(first)
    assert (first["index"], first["exact"], first["exec"]) == (0, 1, 1)
    assert report["summary"]["levels"]["all"]["exec"] == {"correct": 1, "count": 2, "rate": 0.5}
    assert main([*argv, "--etype", "exec", "--keep-distinct"]) == 0
    assert "extraction" not in report and report["settings"]["extract"] is False


def test_eval_command_extract_prints_the_official_scores_beside(bench, tmp_path, capsys):
    db_dir, tables, write = bench
    gold = write("gold.txt", ["SELECT name FROM singer\tmusic", "SELECT count(*) FROM concert\tmusic"])
    answer = "The answer: SELECT count(*) FROM concert; -- every concert"
    pred = write("pred.txt", ["SELECT name FROM singer", answer])
    output = tmp_path / "results.json"
    argv = [*eval_argv(pred, gold, db_dir, tables), "--workers", "1", "--output", str(output)]
    assert main(argv) == 0  # the default scores the line as written, as the official tool does
    assert table_row(capsys.readouterr().err, "execution (EX)")[-1] == "1 (0.500)"
    assert main([*argv, "--extract"]) == 0
    err = capsys.readouterr().err
    assert table_row(err, "execution (EX), extracted")[-1] == "2 (1.000)"
    assert table_row(err, "execution (EX), official")[-1] == "1 (0.500)"
    assert table_row(err, "exact match (EM), official")[-1] == "1 (0.500)"
    assert "extraction changed 1 of 2 predictions" in err and "EX +1 -0, EM +1 -0" in err
    report = json.loads(output.read_text())
    assert report["settings"]["extract"] is True
    gained = {"gained": 1, "lost": 0}
    assert report["extraction"] == {"changed": 1, "count": 2, "exec": gained, "exact": gained}
    assert report["summary"]["levels"]["all"]["exec"]["correct"] == 2
    assert report["official"]["summary"]["levels"]["all"]["exec"]["correct"] == 1
    first, second = report["examples"]
    assert "official" not in first
    assert second["pred"] == "SELECT count(*) FROM concert" and (second["exec"], second["exact"]) == (1, 1)
    official = second["official"]
    assert official["pred"] == answer and (official["exec"], official["exact"]) == (0, 0)


def test_predictions_from_predict_score_the_same_without_extraction(bench, tmp_path):
    """`sqltune predict` writes extracted SQL in `sql` (the model's text in `raw`), so the default
    scores what was predicted, and extracting again changes nothing."""
    db_dir, tables, write = bench
    gold = write("gold.txt", ["SELECT name FROM singer\tmusic", "SELECT count(*) FROM concert\tmusic"])
    answers = [
        "```sql\nSELECT name\nFROM singer;\n```",
        "Answer: SELECT count(*) FROM concert WHERE (venue LIKE '%;%');",
    ]
    rows = [
        {"index": i, "db_id": "music", "sql": extract_sql(raw), "raw": raw} for i, raw in enumerate(answers)
    ]
    pred = write("pred.jsonl", [json.dumps(row) for row in rows])
    default = evaluate(pred, gold, db_dir, tables, workers=1)
    extracted = evaluate(pred, gold, db_dir, tables, workers=1, extract=True)
    assert [(r["exec"], r["exact"]) for r in default["examples"]] == [(1, 1), (0, 0)]
    assert extracted["extraction"]["changed"] == 0
    assert extracted["summary"] == extracted["official"]["summary"] == default["summary"]


def test_raw_is_a_deprecated_no_op(bench, capsys):
    db_dir, tables, write = bench
    gold = write("gold.txt", ["SELECT name FROM singer\tmusic"])
    pred = write("pred.txt", ["SELECT name FROM singer"])
    argv = eval_argv(pred, gold, db_dir, tables)
    with pytest.warns(SqltuneWarning, match="--raw is deprecated"):
        assert main([*argv, "--raw"]) == 0
    assert main([*argv, "--raw", "--extract"]) == 2
    assert "raw and extract contradict each other" in capsys.readouterr().err


def test_eval_command_errors(bench, capsys):
    db_dir, tables, write = bench
    gold = write("gold.txt", ["SELECT name FROM singer\tmusic"])
    pred = write("pred.txt", ["SELECT 1", "SELECT 2"])
    argv = eval_argv(pred, gold, db_dir, tables)
    assert main(argv) == 2
    assert "has 2 prediction lines but the gold has 1" in capsys.readouterr().err
    assert main([*argv[:-2], "--etype", "fast"]) == 2
    assert "etype: unknown 'fast'" in capsys.readouterr().err
    assert main(["eval", "--gold", str(gold)]) == 2
    assert main(["eval", "--help"]) == 0 and "plug_value" in capsys.readouterr().out
