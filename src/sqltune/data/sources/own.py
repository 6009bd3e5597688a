"""Your own data: question/SQL pairs over your own database (`sqlite`) or over databases described
by a tables.json or a folder of SQLite files (`jsonl`).

* `source=sqlite db=shop.sqlite questions=pairs.jsonl`: the database (a SQLite file or any
  SQLAlchemy URL) is introspected into a `Schema` with types, keys and a few sample values; the
  pairs need no db_id.
* `source=jsonl questions=pairs.jsonl tables=tables.json db_dir=database/`: each pair names its
  db_id; schemas come from the tables file, or, without one, from `<db_dir>/<db_id>/<db_id>.sqlite`
  (the layout `sqltune data synth` reads and writes).

Question files are `.jsonl`, `.json` (a list) or `.csv` with a `question` and a `sql` (or `query`)
column; `db_id` and `evidence` are optional.
"""

from __future__ import annotations

from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.introspect import (
    attach_samples,
    hide_password,
    is_url,
    schema_from_sqlite,
    schema_from_url,
)
from sqltune.data.schema import Schema, load_tables_json
from sqltune.data.sources import Skips, SourceData
from sqltune.data.sources.common import load_records, read_examples
from sqltune.db.sqlite import find_db_file
from sqltune.errors import ConfigError, DataError
from sqltune.files import require_file

SAMPLE_VALUES = 3  # distinct values per column read at introspection


def _questions(args: SourceArguments) -> Path:
    if not args.questions:
        raise ConfigError(f"source={args.source} needs questions=<jsonl or csv file of question/SQL pairs>")
    return require_file(args.questions, "question file")


def read_sqlite(args: SourceArguments) -> SourceData:
    if not args.db:
        raise ConfigError("source=sqlite needs db=<SQLite file or SQLAlchemy URL>")
    questions = _questions(args)
    if is_url(args.db):
        schema = schema_from_url(args.db, values=SAMPLE_VALUES)
        shown = hide_password(args.db)
    else:
        schema = attach_samples(schema_from_sqlite(require_file(args.db, "database")), values=SAMPLE_VALUES)
        shown = str(Path(args.db).resolve())
    schemas = {schema.db_id: schema}
    skips = Skips(args.strict)
    examples, read = read_examples(
        [questions], schemas, args, skips, f"database {shown}", default_db_id=schema.db_id
    )
    return SourceData(examples, schemas, skips.counts, read, None, None, database=shown)


def read_jsonl(args: SourceArguments) -> SourceData:
    questions = _questions(args)
    data_dir = Path(args.data_dir) if args.data_dir else None
    tables_path = Path(args.tables) if args.tables else (data_dir / "tables.json" if data_dir else None)
    db_dir = Path(args.db_dir) if args.db_dir else (data_dir / "database" if data_dir else None)
    if tables_path is not None and (args.tables or tables_path.is_file()):
        schemas = load_tables_json(tables_path, db_dir)
        described_by = str(tables_path)
    elif db_dir is not None:
        schemas = introspect_folder(db_dir, questions)
        described_by, tables_path = f"databases under {db_dir}", None
    else:
        raise ConfigError("source=jsonl needs tables=<tables.json> or db_dir=<folder of <db>/<db>.sqlite>")
    skips = Skips(args.strict)
    examples, read = read_examples([questions], schemas, args, skips, described_by)
    return SourceData(
        examples,
        schemas,
        skips.counts,
        read,
        str(tables_path) if tables_path else None,
        str(db_dir) if db_dir else None,
    )


def introspect_folder(db_dir: Path, questions: Path) -> dict[str, Schema]:
    """Schemas of the databases the question file names, read from `<db_dir>/<db_id>/<db_id>.sqlite`."""
    if not db_dir.is_dir():
        raise DataError(f"database folder not found: {db_dir}")
    db_ids = {r.get("db_id") for r in load_records(questions) if isinstance(r, dict) and r.get("db_id")}
    schemas = {}
    for db_id in sorted(db_ids):
        path = find_db_file(db_dir, db_id)
        if path is not None:
            schemas[db_id] = schema_from_sqlite(path, db_id)
    return schemas
