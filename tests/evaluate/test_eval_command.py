"""`sqltune eval` on the command line: options with dashes, the report file, errors on one line."""

import json

from sqltune.cli import main


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
    assert main([*argv, "--etype", "exec", "--keep-distinct", "--raw"]) == 0


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
