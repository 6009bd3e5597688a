"""Spider: train_spider.json + train_others.json (train) or dev.json (dev), tables.json, database/."""

from __future__ import annotations

from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.schema import load_tables_json
from sqltune.data.sources import Skips, SourceData, require_dir
from sqltune.data.sources.common import read_examples
from sqltune.errors import ConfigError, DataError

SPLIT_FILES = {
    "train": ["train_spider.json", "train_others.json"],
    "dev": ["dev.json"],
    "test": ["test.json"],
}


def read_spider(args: SourceArguments) -> SourceData:
    data_dir = Path(require_dir(args))
    if args.split not in SPLIT_FILES:
        raise ConfigError(f"split: unknown '{args.split}' for spider, choose one of {', '.join(SPLIT_FILES)}")
    tables_path = (
        Path(args.tables)
        if args.tables
        else data_dir / ("test_tables.json" if args.split == "test" else "tables.json")
    )
    db_dir = (
        Path(args.db_dir)
        if args.db_dir
        else data_dir / ("test_database" if args.split == "test" else "database")
    )
    schemas = load_tables_json(tables_path, db_dir)
    names = SPLIT_FILES[args.split]
    files = [data_dir / name for name in names if (data_dir / name).is_file()]
    if not files:
        raise DataError(f"{data_dir}: no {args.split} file ({' or '.join(names)})")
    skips = Skips(args.strict)
    examples, read = read_examples(files, schemas, args, skips, tables_path, sql_keys=("query",))
    return SourceData(examples, schemas, skips.counts, read, str(tables_path), str(db_dir))
