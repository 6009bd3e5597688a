"""`source=synth`: training and held-out questions synthesized from the user's own SQLite database.

    sqltune data source=synth db=shop.sqlite split=train output_dir=data   # -> dataset synth_train
    sqltune data source=synth db=shop.sqlite split=dev output_dir=data     # -> dataset synth_dev

This is how `configs/own_database.yaml` fine-tunes a model for one database without any
hand-written pairs. The database is first copied with SQLite's backup API (consistent even while
another program writes to it) to `<output_dir>/databases/<db>/<db>.sqlite`, beside a Spider-style
`tables.json`: the layout the evaluator reads, and a fixed snapshot that the pairs are checked
against and scored on. `sqltune.data.synth` then draws `synth_pairs` checked question/SQL pairs,
which are shuffled by the seed and split: `holdout` of them (a fraction, or a count when >= 1) are
the `dev` questions, the rest the `train` ones. The same database and seed give the same pairs and
the same split on every call, so the two splits never share a question or a query.

The schema in the prompts is introspected exactly as `sqltune ask` introspects the database, so the
model is trained on the prompt it is later asked with.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.example import Example
from sqltune.data.introspect import is_url, schema_from_sqlite
from sqltune.data.sources import SourceData
from sqltune.data.synth import synthesize
from sqltune.db import connect_readonly
from sqltune.errors import ConfigError, DataError
from sqltune.files import atomic_path, require_file, write_json

SPLITS = ("train", "dev")
FOLDER = "databases"
MIN_PAIRS = 10  # fewer checked pairs than this cannot be split into something to train on and to score


def snapshot(db: Path, target: Path) -> Path:
    """Copy a SQLite database to `target` (atomically) through the backup API."""
    with atomic_path(target) as tmp:
        source = connect_readonly(db, authorizer=False)
        copy = sqlite3.connect(tmp)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
    return target


def holdout_size(total: int, holdout: float) -> int:
    """How many of `total` pairs are held out: a fraction (< 1) or a count (>= 1), leaving at least
    one pair on each side."""
    size = round(total * holdout) if holdout < 1 else int(holdout)
    return min(max(size, 1), total - 1)


def split_pairs(pairs: list[dict], holdout: float, seed: int) -> dict[str, list[dict]]:
    """The pairs shuffled by `seed` and cut into dev (the first `holdout`) and train (the rest)."""
    shuffled = list(pairs)
    random.Random(f"{seed}:holdout").shuffle(shuffled)
    size = holdout_size(len(shuffled), holdout)
    return {"dev": shuffled[:size], "train": shuffled[size:]}


def read_synthesized(args: SourceArguments) -> SourceData:
    if args.split not in SPLITS:
        raise ConfigError(f"split: unknown '{args.split}' for synth, choose one of {', '.join(SPLITS)}")
    if not args.db or is_url(args.db):
        raise ConfigError("source=synth needs db=<a SQLite file> (the database to synthesize questions from)")
    db = require_file(args.db, "database")
    db_id = schema_from_sqlite(db).db_id  # also says, in one line, when the file is not a database
    db_dir = Path(args.output_dir) / FOLDER
    copy = snapshot(db, db_dir / db_id / f"{db_id}.sqlite")
    schema = schema_from_sqlite(copy, db_id)
    tables_path = db_dir / "tables.json"
    write_json(tables_path, [schema.to_spider()])
    pairs = synthesize(copy, args.synth_pairs, args.seed, db_id)
    if len(pairs) < MIN_PAIRS:
        raise DataError(
            f"{db}: only {len(pairs)} checked question/SQL pairs could be synthesized from it "
            f"(at least {MIN_PAIRS} are needed to train and hold some out); does it have tables with rows?"
        )
    examples = [
        Example.from_pair(pair, f"synth_{args.split}_{i}", db_id, "synth")
        for i, pair in enumerate(split_pairs(pairs, args.holdout, args.seed)[args.split])
    ]
    if args.limit is not None:
        examples = examples[: args.limit]
    return SourceData(
        examples,
        {db_id: schema},
        read=len(examples),
        tables_path=str(tables_path),
        db_dir=str(db_dir),
        database=str(db.resolve()),
    )
