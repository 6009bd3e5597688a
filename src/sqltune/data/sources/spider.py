"""Spider: train_spider.json + train_others.json (train) or dev.json (dev), tables.json, database/."""

from __future__ import annotations

from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.example import Example
from sqltune.data.schema import Schema, load_tables_json
from sqltune.data.sources import Skips, SourceData, require_dir
from sqltune.errors import ConfigError, DataError
from sqltune.files import read_json

SPLIT_FILES = {
    "train": ["train_spider.json", "train_others.json"],
    "dev": ["dev.json"],
    "test": ["test.json"],
}


def read_examples(
    files: list[Path],
    schemas: dict[str, Schema],
    args: SourceArguments,
    skips: Skips,
    tables_path: Path,
    sql_keys: tuple[str, ...] = ("query",),
    prefix: str | None = None,
) -> tuple[list[Example], int]:
    """Read single-turn Spider-shaped records (question, SQL, db_id) from JSON lists."""
    examples: list[Example] = []
    read = 0
    for path in files:
        records = read_json(path, f"{args.source} file")
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of examples")
        for index, record in enumerate(records):
            if args.limit is not None and read >= args.limit:
                return examples, read
            read += 1
            where = f"{path}: record {index}"
            if not isinstance(record, dict):
                skips.add("not a JSON object", where)
                continue
            db_id = record.get("db_id")
            if not db_id:
                skips.add("missing db_id", where)
                continue
            if db_id not in schemas:
                raise DataError(f"{where}: unknown db_id '{db_id}' (not in {tables_path})")
            question = record.get("question")
            sql = next((record[k] for k in sql_keys if record.get(k)), None)
            if not isinstance(question, str) or not question.strip():
                skips.add("missing question", where)
                continue
            if not isinstance(sql, str) or not sql.strip():
                skips.add("missing SQL", where)
                continue
            examples.append(
                Example(
                    id=str(record.get("question_id", f"{prefix or args.split}_{read - 1}")),
                    db_id=db_id,
                    question=question,
                    sql=sql,
                    evidence=record.get("evidence") or "",
                    source=args.source,
                    difficulty=record.get("difficulty"),
                )
            )
    return examples, read


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
    examples, read = read_examples(files, schemas, args, skips, tables_path)
    return SourceData(examples, schemas, skips.counts, read, str(tables_path), str(db_dir))
