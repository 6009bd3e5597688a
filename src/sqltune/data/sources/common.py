"""What several readers share: loading a question file (JSON list, JSON lines or CSV), turning
single-turn records into `Example`s, and finding a benchmark's files among the layouts it ships in."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.example import Example
from sqltune.data.schema import Schema
from sqltune.data.sources import Skips
from sqltune.errors import DataError
from sqltune.files import read_json, read_jsonl, read_text

SQL_KEYS = ("query", "sql", "SQL")  # Spider, BIRD's third-party copies, BIRD


def load_records(path: str | Path, what: str = "question file") -> list:
    """The records of a `.json` list, a `.jsonl` file or a `.csv` file with a header row; none is an
    error, since an empty question file is always a mistake."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records: list = read_jsonl(path, what)
    elif suffix == ".csv":
        records = _read_csv(path, what)
    else:
        records = read_json(path, what)
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of examples")
    if not records:
        raise DataError(f"{path}: no examples in the file")
    return records


def _read_csv(path: Path, what: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(read_text(path, what), newline=""))
    try:
        rows = list(reader)
    except csv.Error as err:
        raise DataError(f"{path}: malformed CSV at line {reader.line_num}: {err}") from None
    header = [name.strip() for name in reader.fieldnames or []]
    if "question" not in header or not any(key in header for key in SQL_KEYS):
        raise DataError(f"{path}: the CSV header needs a 'question' and a 'sql' (or 'query') column")
    return [{(k or "").strip(): v for k, v in row.items()} for row in rows]


def first_file(folder: Path, names: list[str]) -> Path | None:
    """The first of `names` (relative paths) that exists under `folder`."""
    return next((folder / name for name in names if (folder / name).is_file()), None)


def read_examples(
    files: list[Path],
    schemas: dict[str, Schema],
    args: SourceArguments,
    skips: Skips,
    tables_path: str | Path,
    sql_keys: tuple[str, ...] = SQL_KEYS,
    default_db_id: str | None = None,
) -> tuple[list[Example], int]:
    """Read single-turn records (question, SQL, db_id) from question files.

    A record without a question or SQL is skipped and counted (an error under `strict=true`); a
    db_id the schemas do not know is an error, because it means the wrong tables file was given.
    """
    examples: list[Example] = []
    read = 0
    for path in files:
        for index, record in enumerate(load_records(path, f"{args.source} file")):
            if args.limit is not None and read >= args.limit:
                return examples, read
            read += 1
            where = f"{path}: record {index}"
            if not isinstance(record, dict):
                skips.add("not a JSON object", where)
                continue
            # a web UI verdict (sqltune.feedback.verdicts): only answers marked correct are gold, and
            # one feedback file holds verdicts on many databases, of which this source reads its own
            verdict = record.get("verdict")
            if verdict is not None and verdict != "correct":
                skips.add(f"verdict '{verdict}' (only correct answers are examples)", where)
                continue
            db_id = record.get("db_id") or default_db_id
            if not db_id:
                skips.add("missing db_id", where)
                continue
            if db_id not in schemas and verdict is not None:
                skips.add("verdict on another database", where)
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
                    id=str(record.get("question_id", f"{args.split}_{read - 1}")),
                    db_id=db_id,
                    question=question,
                    sql=sql,
                    evidence=record.get("evidence") or "",
                    source=args.source,
                    difficulty=record.get("difficulty") or None,
                )
            )
    return examples, read
