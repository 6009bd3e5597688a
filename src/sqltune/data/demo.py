"""The embedded demo: six small SQLite databases built from code, with synthesized questions.

    sqltune data source=demo split=train output_dir=data   # -> dataset demo_train
    sqltune data source=demo split=dev output_dir=data     # -> dataset demo_dev

The project cannot ship Spider, so its quickstart trains and evaluates on data it makes itself.
The databases (`demo_domains`) are written to `<output_dir>/demo_databases/<db>/<db>.sqlite` with a
Spider-style `tables.json` beside them, then `sqltune.data.synth` writes question/SQL pairs for
each. The split holds out whole databases (dev: hospital and flights), so the dev score measures
what Spider's measures: questions over databases never seen in training. Everything is
deterministic: the same code and seed give the same databases, pairs and split on any machine.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.demo_domains import DOMAINS, Domain
from sqltune.data.example import Example
from sqltune.data.introspect import schema_from_sqlite
from sqltune.data.schema import load_tables_json
from sqltune.data.sources import SourceData
from sqltune.data.synth import synthesize
from sqltune.errors import ConfigError
from sqltune.files import atomic_path, write_json

SPLITS = {
    "train": ["bookstore", "university", "music", "retail"],
    "dev": ["hospital", "flights"],
}
PAIRS_PER_DB = {"train": 100, "dev": 50}  # 400 train and 100 dev questions
FOLDER = "demo_databases"


def write_database(domain: Domain, path: Path) -> None:
    """Build one demo database in a temporary file and rename it into place."""
    with atomic_path(path) as tmp:
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(domain.ddl)
            for table, rows in domain.rows(random.Random(f"sqltune-demo:{domain.name}")).items():
                marks = ", ".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            conn.commit()
        finally:
            conn.close()


def build_demo_databases(folder: str | Path) -> Path:
    """Write every demo database and their tables.json under `folder`; return the tables.json path."""
    folder = Path(folder)
    entries = []
    for domain in DOMAINS:
        path = folder / domain.name / f"{domain.name}.sqlite"
        write_database(domain, path)
        entries.append(schema_from_sqlite(path, domain.name).to_spider())
    tables_path = folder / "tables.json"
    write_json(tables_path, entries)
    return tables_path


def read_demo(args: SourceArguments) -> SourceData:
    if args.split not in SPLITS:
        raise ConfigError(f"split: unknown '{args.split}' for demo, choose one of {', '.join(SPLITS)}")
    db_dir = Path(args.db_dir) if args.db_dir else Path(args.output_dir) / FOLDER
    tables_path = build_demo_databases(db_dir)
    schemas = load_tables_json(tables_path, db_dir)
    examples: list[Example] = []
    for db_id in SPLITS[args.split]:
        for pair in synthesize(schemas[db_id].db_path, PAIRS_PER_DB[args.split], args.seed, db_id):
            examples.append(Example.from_pair(pair, f"demo_{args.split}_{len(examples)}", db_id, "demo"))
    if args.limit is not None:
        examples = examples[: args.limit]
    return SourceData(examples, schemas, read=len(examples), tables_path=str(tables_path), db_dir=str(db_dir))
