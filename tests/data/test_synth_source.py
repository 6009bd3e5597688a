"""`source=synth`: train and held-out questions synthesized from one SQLite database."""

import sqlite3

import pytest

from sqltune.args import SourceArguments
from sqltune.data.sources import read_source
from sqltune.data.sources.synthesized import holdout_size
from sqltune.errors import SqltuneError
from tests.infer.conftest import write_concert_db


def read(db, folder, split, **options):
    return read_source(
        SourceArguments(source="synth", db=str(db), split=split, output_dir=str(folder), **options)
    )


def pairs(data) -> set[tuple[str, str]]:
    return {(e.question, e.sql) for e in data.examples}


def test_the_split_is_disjoint_deterministic_and_sized(tmp_path):
    db = write_concert_db(tmp_path / "concert.sqlite")
    train = read(db, tmp_path / "a", "train", synth_pairs=40, holdout=10)
    dev = read(db, tmp_path / "a", "dev", synth_pairs=40, holdout=10)
    assert len(train.examples) == 30 and len(dev.examples) == 10
    assert not pairs(train) & pairs(dev)
    assert not {e.sql for e in train.examples} & {e.sql for e in dev.examples}
    assert pairs(read(db, tmp_path / "b", "dev", synth_pairs=40, holdout=10)) == pairs(dev)
    assert pairs(read(db, tmp_path / "c", "dev", synth_pairs=40, holdout=10, seed=7)) != pairs(dev)
    assert len(read(db, tmp_path / "d", "dev", synth_pairs=40, holdout=0.25).examples) == 10


def test_questions_are_scored_on_a_snapshot_in_the_evaluator_layout(tmp_path):
    db = write_concert_db(tmp_path / "concert.sqlite")
    data = read(db, tmp_path / "out", "dev", synth_pairs=20, holdout=5)
    copy = tmp_path / "out" / "databases" / "concert" / "concert.sqlite"
    assert data.db_dir == str(copy.parent.parent) and data.database == str(db.resolve())
    assert data.schemas["concert"].db_path == str(copy)
    dump = [list(sqlite3.connect(path).iterdump()) for path in (db, copy)]
    assert dump[0] == dump[1]
    assert (copy.parent.parent / "tables.json").is_file()


def test_holdout_keeps_something_on_both_sides():
    assert holdout_size(300, 0.2) == 60 and holdout_size(300, 50) == 50
    assert holdout_size(10, 0.01) == 1 and holdout_size(10, 50) == 9


def test_bad_input_is_one_clear_error(tmp_path):
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE TABLE t (a INTEGER)").connection.commit()
    with pytest.raises(SqltuneError, match="only 0 checked question/SQL pairs"):
        read(empty, tmp_path / "out", "train")
    with pytest.raises(SqltuneError, match="needs db=<a SQLite file>"):
        read("postgresql://localhost/shop", tmp_path / "out", "train")
    with pytest.raises(SqltuneError, match="split: unknown 'test'"):
        read(empty, tmp_path / "out", "test")
    with pytest.raises(SqltuneError, match="holdout > 0"):
        read(empty, tmp_path / "out", "train", holdout=float("nan"))
    not_a_database = tmp_path / "notes.sqlite"
    not_a_database.write_text("hello")
    with pytest.raises(SqltuneError, match="cannot read the database schema"):
        read(not_a_database, tmp_path / "out", "train")
