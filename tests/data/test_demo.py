import json
import sqlite3

from sqltune.cli import main
from sqltune.data.records import load_dataset
from sqltune.db import execute


def build(out):
    for split in ("train", "dev"):
        assert main(["data", "source=demo", f"split={split}", f"output_dir={out}"]) == 0
    return load_dataset(out, "demo_train"), load_dataset(out, "demo_dev")


def test_demo_split_holds_out_whole_databases(tmp_path):
    train, dev = build(tmp_path / "a")
    assert len(train.records) == 400 and len(dev.records) == 100
    train_dbs, dev_dbs = {e.db_id for e in train.examples}, {e.db_id for e in dev.examples}
    assert train_dbs == {"bookstore", "university", "music", "retail"} and dev_dbs == {"hospital", "flights"}
    assert {e.difficulty for e in dev.examples} >= {"easy", "medium", "hard"}
    entry = json.loads((tmp_path / "a" / "dataset_info.json").read_text())["demo_dev"]["sqltune"]
    assert entry["source"] == "demo" and entry["db_dir"].endswith("demo_databases")
    for example in train.examples + dev.examples:
        db = tmp_path / "a" / "demo_databases" / example.db_id / f"{example.db_id}.sqlite"
        assert execute(db, example.sql).rows, example


def test_demo_databases_are_realistic_and_keyed(tmp_path):
    build(tmp_path)
    tables = json.loads((tmp_path / "demo_databases" / "tables.json").read_text())
    assert len(tables) == 6
    for entry in tables:
        assert 3 <= len(entry["table_names_original"]) <= 8, entry["db_id"]
        assert len(entry["foreign_keys"]) >= 2 and entry["primary_keys"], entry["db_id"]
        conn = sqlite3.connect(tmp_path / "demo_databases" / entry["db_id"] / f"{entry['db_id']}.sqlite")
        counts = [
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in entry["table_names_original"]
        ]
        assert min(counts) >= 6 and max(counts) >= 100, (entry["db_id"], counts)
        conn.close()
    university = next(e for e in tables if e["db_id"] == "university")
    assert any(isinstance(k, list) for k in university["primary_keys"])  # enrollments (student_id, course_id)


def test_demo_is_deterministic(tmp_path):
    build(tmp_path / "a")
    build(tmp_path / "b")
    for name in (
        "demo_train.jsonl",
        "demo_dev.jsonl",
        "demo_databases/tables.json",
        "demo_databases/flights/flights.sqlite",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_demo_unknown_split(tmp_path, capsys):
    assert main(["data", "source=demo", "split=test", f"output_dir={tmp_path}"]) == 2
    assert "split: unknown 'test' for demo" in capsys.readouterr().err
