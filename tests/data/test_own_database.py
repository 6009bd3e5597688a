import json
import re

import pytest

from sqltune.cli import main
from sqltune.data.introspect import schema_from_sqlite, schema_from_url
from sqltune.data.records import load_dataset
from sqltune.db import execute
from sqltune.errors import DataError

PAIRS = [
    {"question": "How many books are there?", "sql": "SELECT count(*) FROM books"},
    {
        "question": "List the titles of fantasy books.",
        "sql": "SELECT title FROM books WHERE genre = 'Fantasy'",
    },
    {"question": "Which authors live in Spain?", "sql": ""},
]


def test_sqlite_file_with_csv_questions(demo_dir, tmp_path):
    questions = tmp_path / "pairs.csv"
    questions.write_text(
        "question,sql\nHow many books are there?,SELECT count(*) FROM books\n"
        '"Titles of books under 10, please",SELECT title FROM books WHERE price < 10\n'
    )
    db = demo_dir / "bookstore" / "bookstore.sqlite"
    out = tmp_path / "out"
    args = ["data", "source=sqlite", f"db={db}", f"questions={questions}", f"output_dir={out}"]
    assert main([*args, "split=mine", "prompt_format=ddl", "sample_values=2"]) == 0
    dataset = load_dataset(out, "sqlite_mine")
    assert [e.db_id for e in dataset.examples] == ["bookstore", "bookstore"]
    assert dataset.examples[1].question == "Titles of books under 10, please"
    instruction = dataset.records[0]["instruction"]
    assert (
        "CREATE TABLE books (" in instruction
        and "FOREIGN KEY (author_id) REFERENCES authors(author_id)" in instruction
    )
    assert re.search(r"\n  genre TEXT, -- e\.g\. '[A-Za-z ]+', '[A-Za-z ]+'\n", instruction)
    schema = dataset.schemas["bookstore"]
    assert schema.db_path == str(db) and len(schema.table("books").column("genre").values) == 2
    assert dataset.entry["sqltune"]["database"] == str(db.resolve())


def test_sqlalchemy_url_with_jsonl_questions(demo_dir, tmp_path, capsys):
    questions = tmp_path / "pairs.jsonl"
    questions.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    url = f"sqlite:///{demo_dir / 'bookstore' / 'bookstore.sqlite'}"
    out = tmp_path / "out"
    assert main(["data", "source=sqlite", f"db={url}", f"questions={questions}", f"output_dir={out}"]) == 0
    dataset = load_dataset(out, "sqlite_train")
    assert len(dataset.records) == 2 and "1 missing SQL" in capsys.readouterr().err
    assert (
        dataset.records[0]["instruction"].count(
            "The author_id of books is the foreign key of author_id of authors."
        )
        == 1
    )


def test_schema_from_url_uses_the_inspector(demo_dir):
    """A URL SQLAlchemy opens itself (here SQLite in URI mode) gives the same schema as PRAGMAs."""
    path = demo_dir / "flights" / "flights.sqlite"
    via_url = schema_from_url(f"sqlite:///file:{path}?mode=ro&uri=true", values=3)
    direct = schema_from_sqlite(path)
    assert via_url.db_id == "flights" and via_url.db_path is None
    assert {t.name: [(c.name, c.type) for c in t.columns] for t in via_url.tables} == {
        t.name: [(c.name, c.type) for c in t.columns] for t in direct.tables
    }
    assert {t.name: t.primary_keys for t in via_url.tables} == {t.name: t.primary_keys for t in direct.tables}
    key = lambda fk: (fk.table, fk.column, fk.ref_table, fk.ref_column)  # noqa: E731
    assert sorted(map(key, via_url.foreign_keys)) == sorted(map(key, direct.foreign_keys))
    assert ("flights", "origin", "airports", "airport_code") in map(key, via_url.foreign_keys)
    seat = via_url.table("bookings").column("seat_class").values
    assert len(seat) == 3 and set(seat) == {"Economy", "Business", "First"}


@pytest.mark.parametrize(
    "url, message",
    [
        (
            "postgresql://bob:secret@127.0.0.1:1/shop",
            "cannot read database URL 'postgresql://bob:***@127.0.0.1:1/shop'",
        ),
        ("nosuchdialect://host/db", "cannot read database URL 'nosuchdialect://host/db'"),
        ("sqlite:////no/such/dir/shop.db", "database not found: /no/such/dir/shop.db"),
    ],
)
def test_unreadable_url_is_one_clear_error(url, message, tmp_path, capsys):
    questions = tmp_path / "pairs.jsonl"
    questions.write_text(json.dumps(PAIRS[0]) + "\n")
    out = tmp_path / "out"
    assert main(["data", "source=sqlite", f"db={url}", f"questions={questions}", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing half-written


def test_own_database_bad_inputs(demo_dir, tmp_path, capsys):
    questions = tmp_path / "pairs.jsonl"
    questions.write_text(json.dumps(PAIRS[0]) + "\n" + json.dumps({**PAIRS[1], "db_id": "shop"}) + "\n")
    db = demo_dir / "bookstore" / "bookstore.sqlite"
    out = f"output_dir={tmp_path / 'out'}"
    assert (
        main(["data", "source=sqlite", f"db={tmp_path / 'missing.sqlite'}", f"questions={questions}", out])
        == 2
    )
    assert "database not found" in capsys.readouterr().err
    assert main(["data", "source=sqlite", f"db={db}", f"questions={tmp_path / 'none.jsonl'}", out]) == 2
    assert "question file not found" in capsys.readouterr().err
    assert main(["data", "source=sqlite", f"db={db}", f"questions={questions}", out]) == 2
    assert "pairs.jsonl: record 1: unknown db_id 'shop'" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("question,answer\nq,a\n")
    assert main(["data", "source=sqlite", f"db={db}", f"questions={tmp_path / 'bad.csv'}", out]) == 2
    assert "needs a 'question' and a 'sql'" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text(json.dumps(PAIRS[0]) + "\n[1, 2\n")
    assert main(["data", "source=sqlite", f"db={db}", f"questions={tmp_path / 'bad.jsonl'}", out]) == 2
    assert "bad.jsonl: malformed JSON at line 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_jsonl_source_over_tables_json_or_a_database_folder(demo_dir, tmp_path, capsys):
    pairs = [
        {"db_id": "music", "question": "How many artists?", "sql": "SELECT count(*) FROM artists"},
        {"db_id": "hospital", "question": "Names of doctors?", "query": "SELECT name FROM doctors"},
        {"db_id": "hospital", "sql": "SELECT 1"},
    ]
    questions = tmp_path / "pairs.jsonl"
    questions.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    out = tmp_path / "out"
    base = ["data", "source=jsonl", f"questions={questions}", f"output_dir={out}"]
    assert main([*base, f"tables={demo_dir / 'tables.json'}", f"db_dir={demo_dir}", "dataset_name=a"]) == 0
    assert main([*base, f"db_dir={demo_dir}", "dataset_name=b", "sample_values=1"]) == 0
    assert capsys.readouterr().err.count("1 missing question") == 2
    a, b = load_dataset(out, "a"), load_dataset(out, "b")
    assert (
        [r["output"] for r in a.records]
        == [r["output"] for r in b.records]
        == [p.get("sql") or p.get("query") for p in pairs[:2]]
    )
    assert set(b.schemas) == {"music", "hospital"} and "name ('Dr." in b.records[1]["instruction"]
    assert main([*base, f"db_dir={demo_dir}", "strict=true", "dataset_name=c"]) == 2
    assert "pairs.jsonl: record 2: missing question (strict=true)" in capsys.readouterr().err
    questions.write_text(json.dumps({"db_id": "zoo", "question": "q", "sql": "SELECT 1"}) + "\n")
    assert main([*base, f"db_dir={demo_dir}", "dataset_name=d"]) == 2
    assert f"record 0: unknown db_id 'zoo' (not in databases under {demo_dir})" in capsys.readouterr().err
    assert not (out / "c.jsonl").exists() and not (out / "d.jsonl").exists()


def test_gold_sql_of_own_pairs_runs(demo_dir):
    assert execute(demo_dir / "bookstore" / "bookstore.sqlite", PAIRS[1]["sql"]).rows


def test_schema_from_url_rejects_garbage():
    with pytest.raises(DataError, match="Could not parse SQLAlchemy URL"):
        schema_from_url("://nothing")


def test_introspection_agrees_with_spider_tables_json(spider_dir, tmp_path):
    """Own-database introspection of Spider files finds the keys tables.json declares."""
    from sqltune.data.schema import load_tables_json

    declared = load_tables_json(spider_dir / "tables.json")
    for db_id in ("concert_singer", "pets_1", "car_1", "student_transcripts_tracking"):
        live = schema_from_sqlite(spider_dir / "database" / db_id / f"{db_id}.sqlite")
        assert {t.name.lower() for t in live.tables} == {t.name.lower() for t in declared[db_id].tables}
        key = lambda fk: (fk.table.lower(), fk.column.lower(), fk.ref_table.lower(), fk.ref_column.lower())  # noqa: E731
        assert set(map(key, live.foreign_keys)) >= set(map(key, declared[db_id].foreign_keys)), db_id
    pairs = [e for e in json.loads((spider_dir / "dev.json").read_text()) if e["db_id"] == "concert_singer"]
    questions = tmp_path / "pairs.jsonl"
    questions.write_text(
        "".join(json.dumps({"question": e["question"], "sql": e["query"]}) + "\n" for e in pairs)
    )
    db = spider_dir / "database" / "concert_singer" / "concert_singer.sqlite"
    assert (
        main(["data", "source=sqlite", f"db={db}", f"questions={questions}", f"output_dir={tmp_path}"]) == 0
    )
    assert len(load_dataset(tmp_path, "sqlite_train").records) == len(pairs) == 45
