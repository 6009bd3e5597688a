"""BIRD: `dev.json` (or the mini-dev's `mini_dev_sqlite.json`) with `dev_tables.json` and, when
present, `dev_databases/<db>/<db>.sqlite`.

BIRD ships in several layouts: the official `dev/` folder holds all three side by side, the mini-dev
puts `mini_dev_sqlite.json` beside `dev_tables.json`, and copies often keep `dev.json` one folder
above the tables file. The tables file is therefore looked for in `data_dir`, then in its
subfolders; `tables=` overrides the search. The gold SQL is `SQL` in BIRD's files and `sql` in
some copies; the evidence (BIRD's hint) and the difficulty are kept with each example.

The mini-dev also ships its questions with PostgreSQL and MySQL gold SQL (`mini_dev_postgresql.json`,
`mini_dev_mysql.json`, same questions and ids). With `dialect=postgres|mysql` that file is read when
it is in `data_dir`, its SQL used as written (see `sqltune.data.dialect`).
"""

from __future__ import annotations

from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.schema import load_tables_json
from sqltune.data.sources import Skips, SourceData, require_dir
from sqltune.data.sources.common import first_file, read_examples
from sqltune.errors import ConfigError, DataError

QUESTION_FILES = {
    "train": ["train.json", "train/train.json"],
    "dev": ["dev.json", "mini_dev_sqlite.json", "dev/dev.json"],
}
DIALECT_FILES = {"postgres": "mini_dev_postgresql.json", "mysql": "mini_dev_mysql.json"}  # dev only


def find_tables(data_dir: Path, split: str) -> Path:
    """`<split>_tables.json` in data_dir, else in one of its subfolders (first in name order)."""
    name = f"{split}_tables.json"
    found = first_file(data_dir, [name, "tables.json"]) or next(
        iter(sorted(data_dir.glob(f"*/{name}"))), None
    )
    if found is None:
        raise DataError(f"tables file not found: no {name} in {data_dir} or its subfolders (set tables=)")
    return found


def dialect_questions(args: SourceArguments, dialect: str) -> Path | None:
    """The mini-dev's question file with gold SQL in `dialect`, when `data_dir` holds one."""
    if args.split != "dev" or dialect not in DIALECT_FILES:
        return None
    return first_file(Path(require_dir(args)), [DIALECT_FILES[dialect]])


def read_bird(args: SourceArguments, dialect: str = "sqlite") -> SourceData:
    data_dir = Path(require_dir(args))
    if args.split not in QUESTION_FILES:
        raise ConfigError(
            f"split: unknown '{args.split}' for bird, choose one of {', '.join(QUESTION_FILES)}"
        )
    names = QUESTION_FILES[args.split] if dialect == "sqlite" else [DIALECT_FILES[dialect]]
    questions = first_file(data_dir, names)
    if questions is None:
        raise DataError(f"{data_dir}: no BIRD {args.split} file ({' or '.join(names)})")
    tables_path = Path(args.tables) if args.tables else find_tables(data_dir, args.split)
    db_dir = (
        Path(args.db_dir)
        if args.db_dir
        else first_existing_dir(
            [data_dir / f"{args.split}_databases", tables_path.parent / f"{args.split}_databases"]
        )
    )
    schemas = load_tables_json(tables_path, db_dir)
    skips = Skips(args.strict)
    examples, read = read_examples([questions], schemas, args, skips, tables_path, sql_keys=("SQL", "sql"))
    return SourceData(examples, schemas, skips.counts, read, str(tables_path), str(db_dir))


def first_existing_dir(candidates: list[Path]) -> Path:
    """The first folder that exists, else the first candidate (databases are optional for BIRD)."""
    return next((c for c in candidates if c.is_dir()), candidates[0])
