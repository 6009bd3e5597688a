"""Fixtures of the training tests: the tiny model and datasets of `tests.tiny`, pairwise data, and the
tiny dataset with a real SQLite database for the stages that execute answers."""

import json
import sqlite3

import pytest

from tests.tiny import QUESTIONS, TABLES, make_dataset, tiny_data_dir, tiny_model_dir, tiny_tokenizer  # noqa: F401


@pytest.fixture
def pair_data(tmp_path):
    """The tiny dataset plus a LLaMA-Factory style ranking dataset: gold SQL over another question's."""
    data = make_dataset(tmp_path / "data", count=8)
    rows = [
        {
            "instruction": "Write the SQL query for the question.\n",
            "input": question,
            "chosen": sql,
            "rejected": QUESTIONS[(i + 1) % len(QUESTIONS)][1],
        }
        for i, (question, sql) in enumerate(QUESTIONS)
    ]
    (data / "tiny_pairs.json").write_text(json.dumps(rows))
    registry = json.loads((data / "dataset_info.json").read_text())
    registry["tiny_pairs"] = {
        "file_name": "tiny_pairs.json",
        "ranking": True,
        "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
    }
    (data / "dataset_info.json").write_text(json.dumps(registry))
    return data


def concert_database(db_dir):
    """The tiny datasets' database as a real SQLite file, a few rows per table."""
    path = db_dir / "concert_singer" / "concert_singer.sqlite"
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    for table, columns in TABLES.items():
        conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
        rows = [tuple(i * 10 + j for j in range(len(columns))) for i in range(1, 4)]
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
    conn.commit()
    conn.close()
    return db_dir


def set_entry(data_dir, name, **changes):
    registry_path = data_dir / "dataset_info.json"
    registry = json.loads(registry_path.read_text())
    registry[name].update(changes)
    registry_path.write_text(json.dumps(registry))


@pytest.fixture
def grpo_data(tmp_path):
    data = make_dataset(tmp_path / "data", count=8)
    db_dir = concert_database(tmp_path / "databases")
    registry = json.loads((data / "dataset_info.json").read_text())
    set_entry(data, "tiny_train", sqltune={**registry["tiny_train"]["sqltune"], "db_dir": str(db_dir)})
    return data
