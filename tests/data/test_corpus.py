"""`sqltune data corpus`: DDL, rows and SQL of real SQLite databases as a pt corpus, then stage=pt on it."""

import json
import math
import sqlite3

import pytest

from sqltune.cli import main as cli
from sqltune.runcard import RunCard
from tests.tiny import build_model_dir

SHOP_DDL = (
    "CREATE TABLE customers (\n  id INTEGER PRIMARY KEY,\n  name TEXT NOT NULL,\n  city TEXT\n)",
    'CREATE TABLE "order items" (order_id INTEGER, customer_id INTEGER REFERENCES customers(id), total REAL)',
)
SCHOOL_DDL = ("CREATE TABLE students (student_id INTEGER PRIMARY KEY, name TEXT, grade INTEGER)",)
QUESTIONS = [
    {"db_id": "shop", "question": "How many customers are there?", "query": "SELECT count(*) FROM customers"},
    {"db_id": "school", "question": "List the student\nnames.", "query": "SELECT name FROM students;"},
    {"db_id": "shop", "question": "Which city has most customers?", "query": "SELECT city FROM customers"},
    {"db_id": "elsewhere", "question": "Count the planes.", "query": "SELECT count(*) FROM planes"},
]


def make_database(db_dir, db_id, ddl, rows):
    path = db_dir / db_id / f"{db_id}.sqlite"
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    for statement in ddl:
        conn.execute(statement)
    for table, values in rows.items():
        marks = ", ".join("?" * len(values[0]))
        conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', values)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def corpus_inputs(tmp_path):
    db_dir = tmp_path / "databases"
    customers = [(i, f"Customer {i}", None if i == 2 else f"City {i % 3}") for i in range(1, 6)]
    items = [(i, i % 5 + 1, 10.5 * i) for i in range(1, 8)]
    make_database(db_dir, "shop", SHOP_DDL, {"customers": customers, "order items": items})
    make_database(db_dir, "school", SCHOOL_DDL, {"students": [(1, "Ann O'Neil", 9), (2, "Bo", 10)]})
    questions = tmp_path / "train.json"
    questions.write_text(json.dumps(QUESTIONS))
    return db_dir, questions


def corpus(db_dir, out, *extra: str) -> int:
    return cli(["data", "corpus", f"db_dir={db_dir}", f"output_dir={out}", *extra])


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_corpus_holds_ddl_rows_and_questions_per_database(corpus_inputs, tmp_path, capsys):
    db_dir, questions = corpus_inputs
    out = tmp_path / "data"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "other.jsonl"}}))
    assert corpus(db_dir, out, f"questions={questions}", "rows_per_table=2") == 0
    summary = capsys.readouterr().err
    assert (
        "databases" in summary
        and "characters" in summary
        and "4 (1 about databases not in db_dir)" in summary
    )
    rows = read_rows(out / "corpus.jsonl")
    assert [(r["db_id"], r["kind"]) for r in rows] == [
        ("school", "schema"),
        ("school", "questions"),
        ("shop", "schema"),
        ("shop", "questions"),
        ("elsewhere", "questions"),
    ]
    shop = rows[2]["text"]
    for statement in SHOP_DDL:  # the DDL as the database stores it, verbatim
        assert statement + ";" in shop
    assert (
        "INSERT INTO customers (id, name, city) VALUES\n"
        "  (1, 'Customer 1', 'City 1'),\n  (2, 'Customer 2', NULL);" in shop
    )
    assert 'INSERT INTO "order items" (order_id, customer_id, total) VALUES\n  (1, 2, 10.5),' in shop
    assert "Customer 3" not in shop  # rows_per_table=2
    assert "(1, 'Ann O''Neil', 9)" in rows[0]["text"]
    assert rows[1]["text"] == (
        "-- questions about database: school\n\n-- List the student names.\nSELECT name FROM students;"
    )
    assert "-- How many customers are there?\nSELECT count(*) FROM customers;" in rows[3]["text"]
    assert "-- Which city has most customers?\nSELECT city FROM customers;" in rows[3]["text"]
    registry = json.loads((out / "dataset_info.json").read_text())
    assert registry["other"] == {"file_name": "other.jsonl"}  # merged, not replaced
    entry = registry["corpus"]
    assert entry["file_name"] == "corpus.jsonl" and entry["columns"] == {"prompt": "text"}
    assert entry["sqltune"]["source"] == "corpus" and entry["sqltune"]["count"] == 5
    assert entry["sqltune"]["db_dir"] == str(db_dir.resolve())


def test_corpus_is_deterministic_and_filters_databases(corpus_inputs, tmp_path):
    db_dir, questions = corpus_inputs
    first, second = tmp_path / "first", tmp_path / "second"
    assert corpus(db_dir, first, f"questions={questions}") == 0
    assert corpus(db_dir, second, f"questions={questions}") == 0
    assert (first / "corpus.jsonl").read_bytes() == (second / "corpus.jsonl").read_bytes()
    assert corpus(db_dir, first, "databases=shop", "rows_per_table=0", "dataset_name=shop_ddl") == 0
    (row,) = read_rows(first / "shop_ddl.jsonl")
    assert row["db_id"] == "shop" and "CREATE TABLE customers" in row["text"] and "INSERT" not in row["text"]
    assert set(json.loads((first / "dataset_info.json").read_text())) == {"corpus", "shop_ddl"}


def test_pt_trains_on_the_corpus(corpus_inputs, tmp_path):
    db_dir, questions = corpus_inputs
    data = tmp_path / "data"
    assert corpus(db_dir, data, f"questions={questions}") == 0
    model = build_model_dir(tmp_path / "model")
    out = tmp_path / "pt"
    argv = ["train", "stage=pt", f"model_name_or_path={model}", f"dataset_dir={data}", "dataset=corpus"]
    argv += [f"output_dir={out}", "cutoff_len=64", "max_steps=2", "per_device_train_batch_size=2"]
    assert cli([*argv, "save_strategy=no", "logging_steps=1"]) == 0
    card = RunCard.load(out)
    stats = card.data_stats["corpus"]
    assert card.stage == "pt" and stats["texts"] == 5 and stats["blocks"] == stats["tokens"] // 64
    assert card.metrics["train_steps"] == 2 and math.isfinite(card.metrics["train_loss"])


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "corpus needs db_dir="),
        (["db_dir={db_dir}", "databases=shop,nowhere"], "databases: not in"),
        (["db_dir={db_dir}", "rows_per_table=-1"], "rows_per_table: must be >= 0"),
        (
            ["db_dir={db_dir}", "questions={bad}"],
            "bad.json: question 2: expected text fields db_id, question",
        ),
        (["db_dir={db_dir}", "dataset_name=../x"], "dataset_name"),
    ],
)
def test_corpus_user_errors_are_one_line(corpus_inputs, tmp_path, capsys, extra, message):
    db_dir, _ = corpus_inputs
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([QUESTIONS[0], {"db_id": "shop", "question": "No SQL?"}]))
    argv = [arg.format(db_dir=db_dir, bad=bad) for arg in extra]
    assert cli(["data", "corpus", f"output_dir={tmp_path / 'out'}", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out" / "corpus.jsonl").exists()
