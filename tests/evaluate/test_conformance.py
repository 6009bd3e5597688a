"""Row-by-row agreement with the official test-suite evaluator's labels, and gold-vs-gold on Spider dev.

The labels in ../shared/reference/spider_conformance were produced by the unmodified official
evaluator; with default settings every row must agree on hardness, exact, exec (plug_value off and
on) and pred_parse_ok.
"""

from __future__ import annotations

import re

import pytest

from sqltune.evaluate import evaluate

FIELDS = ("hardness", "exact", "exec", "pred_parse_ok")


def read_labels(path, exec_column: str) -> list[dict]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    return [
        {
            "hardness": row["hardness"],
            "exact": int(row["exact"]),
            "exec": int(row[exec_column]),
            "pred_parse_ok": bool(int(row["pred_parse_ok"])),
        }
        for row in rows
    ]


def disagreements(report: dict, labels: list[dict]) -> list[str]:
    assert len(report["examples"]) == len(labels)
    out = []
    for row, label in zip(report["examples"], labels):
        ours = {key: row[key] for key in FIELDS}
        if ours != label:
            out.append(
                f"row {row['index']}: ours {ours} official {label}\n  pred: {row['pred']}\n  gold: {row['gold']}"
            )
    return out


def run_suite(suite, pred_name: str, spider_dir, plug: bool, extract: bool = False) -> dict:
    """Score a suite's files as the official evaluator saw them (the same lines, the official
    tables.json), with sqltune's default settings unless told to extract."""
    return evaluate(
        suite / pred_name,
        suite / "gold.txt",
        spider_dir / "database",
        spider_dir / "tables.json",
        plug_value=plug,
        extract=extract,
    )


def official_table(path) -> dict[str, list[float]]:
    """Rows of a printed official score table: name -> values (only the last block per name)."""
    table = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^(\S.{0,19}?)\s{2,}([\d.\s]+)$", line)
        if match:
            table[match.group(1).strip()] = [float(v) for v in match.group(2).split()]
    return table


@pytest.mark.slow
@pytest.mark.parametrize("plug", [False, True], ids=["plug_off", "plug_on"])
def test_conformance_suite_agrees_row_by_row(reference_dir, spider_dir, plug):
    suite = reference_dir / "spider_conformance"
    report = run_suite(suite, "pred.txt", spider_dir, plug)
    labels = read_labels(suite / "labels.tsv", "exec_plug" if plug else "exec_noplug")
    differing = disagreements(report, labels)
    assert not differing, f"{len(differing)} rows differ from the official labels:\n" + "\n".join(
        differing[:30]
    )
    # The aggregate table, partial-match F1 included, is the official one to three decimals.
    printed = official_table(suite / ("summary_plug.txt" if plug else "summary_noplug.txt"))
    levels = report["summary"]["levels"]
    order = ["easy", "medium", "hard", "extra", "all"]
    assert printed["count"] == [levels[n]["count"] for n in order]
    assert printed["execution"] == [round(levels[n]["exec"]["rate"], 3) for n in order]
    assert printed["exact match"] == [round(levels[n]["exact"]["rate"], 3) for n in order]
    for clause in ("select", "where", "group", "order", "and/or", "IUEN", "keywords"):
        assert printed[clause] == [round(levels[n]["partial"][clause]["f1"], 3) for n in order], clause


@pytest.mark.slow
def test_extraction_changes_no_score_on_the_conformance_suite(reference_dir, spider_dir):
    """The suite's predictions are plain SQL with trailing `;`, loose whitespace and second
    statements, so extraction changes text but no EX or EM (partial F1 moves: the official parser
    reads row 3308's `; EXCEPT ...`, which extraction cuts). With plug_value, rows 509, 792 and
    2353 (`IN (SELECT ... ;)`) once lost EX when extraction cut at the `;` inside the parentheses."""
    suite = reference_dir / "spider_conformance"
    report = run_suite(suite, "pred.txt", spider_dir, plug=True, extract=True)
    assert not disagreements(report, read_labels(suite / "labels.tsv", "exec_plug"))
    unchanged = {"gained": 0, "lost": 0}
    assert report["extraction"] == {"changed": 490, "count": 3800, "exec": unchanged, "exact": unchanged}
    for name, level in report["official"]["summary"]["levels"].items():
        assert (level["exec"], level["exact"]) == (
            report["summary"]["levels"][name]["exec"],
            report["summary"]["levels"][name]["exact"],
        ), name
    for index in (509, 792, 2353):
        assert report["examples"][index]["pred"].endswith(";)")


@pytest.mark.parametrize("plug", [False, True], ids=["plug_off", "plug_on"])
def test_multi_turn_example_agrees_with_joint_accuracy(reference_dir, spider_dir, plug):
    suite = reference_dir / "spider_conformance" / "multiturn"
    report = run_suite(suite, "predict.txt", spider_dir, plug)
    labels = read_labels(suite / "labels.tsv", "exec_plug" if plug else "exec_noplug")
    differing = disagreements(report, labels)
    assert not differing, "\n".join(differing[:30])
    expected_sessions = [
        line.split("\t")[1:3] for line in (suite / "labels.tsv").read_text().splitlines()[1:]
    ]
    assert [[str(r["session"]), str(r["turn"])] for r in report["examples"]] == expected_sessions
    summary = report["summary"]
    assert summary["joint"]["count"] == 132
    assert round(summary["joint"]["exec"]["rate"], 3) == 0.136
    assert summary["joint"]["exact"]["correct"] == 0
    assert round(summary["levels"]["all"]["exec"]["rate"], 3) == (0.217 if plug else 0.208)
    assert round(summary["levels"]["all"]["exact"]["rate"], 3) == 0.084
    assert [summary["turns"][t]["count"] for t in ("turn 1", "turn 2", "turn 3")] == [132, 132, 58]


@pytest.mark.slow
def test_gold_against_itself_on_spider_dev_scores_one_everywhere(spider_dir, tmp_path):
    database = spider_dir / "database"
    lines = [line for line in (spider_dir / "dev_gold.sql").read_text().splitlines() if line.strip()]
    lines = [line for line in lines if line.split("\t")[1] != "wta_1"]
    assert len(lines) == 972
    gold = tmp_path / "gold.txt"
    gold.write_text("\n".join(lines) + "\n")
    pred = tmp_path / "pred.txt"
    pred.write_text("\n".join(line.split("\t")[0] for line in lines) + "\n")
    # The extraction rule must leave plain gold SQL intact: every score stays 1 with it too.
    report = evaluate(pred, gold, database, spider_dir / "tables.json", plug_value=True, extract=True)
    assert report["official"]["summary"]["levels"] == report["summary"]["levels"]
    for name, level in report["summary"]["levels"].items():
        assert level["exec"]["rate"] == 1.0 and level["exact"]["rate"] == 1.0, name
        assert all(clause["f1"] == 1.0 for clause in level["partial"].values()), name
    assert report["summary"]["errors"] == {}
    assert report["settings"]["database_variant"].startswith("original")
