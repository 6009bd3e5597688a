"""A tiny Spider-style benchmark built in the test: one database, its tables.json, gold files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

SINGERS = [
    (1, "Ann", "France", 30),
    (2, "Bob", "Spain", 45),
    (3, "Cid", "France", 52),
    (4, "Dee", "Peru", 45),
]
CONCERTS = [(1, 1, 2014, "Hall"), (2, 1, 2015, "Arena"), (3, 2, 2015, "Hall"), (4, 3, 2016, "Park")]


def build_db(path: Path, singers=SINGERS, concerts=CONCERTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER)")
    conn.execute(
        "CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(singer_id),"
        " year INTEGER, venue TEXT)"
    )
    conn.executemany("INSERT INTO singer VALUES (?, ?, ?, ?)", singers)
    conn.executemany("INSERT INTO concert VALUES (?, ?, ?, ?)", concerts)
    conn.commit()
    conn.close()
    return path


TABLES = [
    {
        "db_id": "music",
        "table_names_original": ["singer", "concert"],
        "table_names": ["singer", "concert"],
        "column_names_original": [
            [-1, "*"],
            [0, "singer_id"],
            [0, "name"],
            [0, "country"],
            [0, "age"],
            [1, "concert_id"],
            [1, "singer_id"],
            [1, "year"],
            [1, "venue"],
        ],
        "column_names": [
            [-1, "*"],
            [0, "singer id"],
            [0, "name"],
            [0, "country"],
            [0, "age"],
            [1, "concert id"],
            [1, "singer id"],
            [1, "year"],
            [1, "venue"],
        ],
        "column_types": ["text", "number", "text", "text", "number", "number", "number", "number", "text"],
        "primary_keys": [1, 5],
        "foreign_keys": [[6, 1]],
    }
]


@pytest.fixture()
def bench(tmp_path):
    """(db_dir, tables.json path, write(name, lines) -> path) for a one-database benchmark."""
    db_dir = tmp_path / "database"
    build_db(db_dir / "music" / "music.sqlite")
    tables = tmp_path / "tables.json"
    tables.write_text(json.dumps(TABLES))

    def write(name: str, lines: list[str]) -> Path:
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return db_dir, tables, write
