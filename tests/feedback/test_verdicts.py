"""The web UI's verdicts file: appended safely, and read by `sqltune data` as training data in which
only the answers marked correct are examples."""

from __future__ import annotations

import json
import threading

import pytest

from sqltune.cli import main as cli
from sqltune.data.demo import build_demo_databases
from sqltune.errors import DataError
from sqltune.feedback.verdicts import Verdict, append_verdict, read_verdicts

MUSIC_SQL = "SELECT genre, count(*) FROM artists GROUP BY genre"


def verdict(verdict: str = "correct", db_id: str = "music", **fields) -> Verdict:
    values = {"question": "How many artists per genre?", "sql": MUSIC_SQL, "db_path": "music.sqlite"}
    return Verdict(db_id=db_id, verdict=verdict, **{**values, **fields})


def test_append_keeps_every_record_as_one_json_line(tmp_path):
    path = tmp_path / "data" / "feedback.jsonl"
    assert read_verdicts(path) == []
    assert append_verdict(path, verdict()) == 1
    assert append_verdict(path, verdict("wrong", sql="SELECT 1", model="saves/run")) == 2
    rows = read_verdicts(path)
    assert [(r["verdict"], r["sql"], r["model"]) for r in rows] == [
        ("correct", MUSIC_SQL, None),
        ("wrong", "SELECT 1", "saves/run"),
    ]
    assert set(rows[0]) == {"question", "sql", "db_id", "verdict", "db_path", "model", "created"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["feedback.jsonl", "feedback.jsonl.lock"]


def test_a_file_without_a_final_newline_gets_one_before_the_new_line(tmp_path):
    path = tmp_path / "feedback.jsonl"
    path.write_text(json.dumps({"question": "q", "sql": "SELECT 1", "db_id": "music"}))
    assert append_verdict(path, verdict()) == 2
    assert len(read_verdicts(path)) == 2


def test_concurrent_appends_never_lose_or_mix_lines(tmp_path):
    path = tmp_path / "feedback.jsonl"

    def clicks(worker: int) -> None:
        for n in range(15):
            append_verdict(path, verdict(question=f"question {worker}-{n}"))

    threads = [threading.Thread(target=clicks, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    questions = sorted(r["question"] for r in read_verdicts(path))
    assert questions == sorted(f"question {w}-{n}" for w in range(6) for n in range(15))


def test_a_server_password_is_never_written(tmp_path):
    path = tmp_path / "feedback.jsonl"
    append_verdict(path, verdict(db_path="postgresql://reader:s3cret@127.0.0.1:5432/shop", db_id="shop"))
    text = path.read_text()
    assert "s3cret" not in text and "reader:***@127.0.0.1" in text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"verdict": "maybe"}, "verdict: unknown 'maybe'"),
        ({"question": "  "}, "needs a question"),
        ({"sql": ""}, "needs a sql"),
    ],
)
def test_bad_verdicts_are_refused(fields, message):
    with pytest.raises(DataError, match=message):
        verdict(**fields)


def test_sqltune_data_reads_only_the_correct_answers(tmp_path, capsys):
    demo = tmp_path / "demo_databases"
    build_demo_databases(demo)
    feedback = tmp_path / "feedback.jsonl"
    append_verdict(feedback, verdict())
    append_verdict(feedback, verdict("wrong", sql="SELECT name FROM artists"))
    append_verdict(feedback, verdict(db_id="shop", db_path="shop.sqlite"))  # not in this folder
    append_verdict(feedback, verdict(question="How many albums?", sql="SELECT count(*) FROM albums"))

    out = tmp_path / "data"
    argv = ["data", "source=jsonl", f"questions={feedback}", f"db_dir={demo}", f"output_dir={out}"]
    assert cli([*argv, "dataset_name=from_feedback"]) == 0
    examples = [json.loads(line) for line in (out / "from_feedback.examples.jsonl").read_text().splitlines()]
    assert [(e["db_id"], e["sql"]) for e in examples] == [
        ("music", MUSIC_SQL),
        ("music", "SELECT count(*) FROM albums"),
    ]
    shown = capsys.readouterr()
    assert (
        "verdict 'wrong'" in shown.out + shown.err and "verdict on another database" in shown.out + shown.err
    )

    sqlite = ["data", "source=sqlite", f"questions={feedback}", f"db={demo / 'music' / 'music.sqlite'}"]
    assert cli([*sqlite, f"output_dir={out}", "dataset_name=music_feedback"]) == 0
    assert len((out / "music_feedback.examples.jsonl").read_text().splitlines()) == 2
