"""`sqltune data corpus`: a continued pre-training corpus (`stage=pt`) from databases and their SQL.

    sqltune data corpus db_dir=data/demo_databases output_dir=data
    sqltune data corpus db_dir=spider/database questions=spider/train_spider.json,spider/train_others.json

For each database (`<db_dir>/<db_id>/<db_id>.sqlite`, sorted by name) one text holds its schema as
the database stores it (the `CREATE TABLE` statements of `sqlite_master`, verbatim) followed by up
to `rows_per_table` rows of every table, written as `INSERT` statements so the model reads real
values beside their column names. With `questions=` (Spider-style JSON lists or JSON lines of
`{"db_id", "question", "query"}`; BIRD's `SQL` and sqltune's `sql` keys work too) a second text
per database pairs each question with its SQL:

    -- How many singers are there?
    SELECT count(*) FROM singer;

The texts of a database follow each other (schema, then its questions), so packed blocks keep the
SQL near the tables it uses; questions of databases not in `db_dir` come last, counted. Everything
is read through `sqltune.db` (read-only, time-limited); the same inputs give a byte-identical file.
The corpus is written atomically as `<output_dir>/<dataset_name>.jsonl` (`{"text", "db_id",
"kind"}`) and registered in `dataset_info.json` in LLaMA-Factory's pt form
(`"columns": {"prompt": "text"}`), beside the entries already there.
"""

from __future__ import annotations

import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from sqltune.args import CorpusArguments
from sqltune.config import format_help, parse_args
from sqltune.data.introspect import attach_samples, schema_from_sqlite
from sqltune.data.prompts import quote_identifier, sql_literal
from sqltune.data.records import register
from sqltune.data.schema import Table
from sqltune.data.synth import find_databases
from sqltune.db import connect_readonly, run_query
from sqltune.errors import ConfigError, DataError
from sqltune.files import check_output, check_output_dir, plain_name, read_json, read_jsonl, write_jsonl

QUERY_TIMEOUT = 30.0  # seconds for reading a database's schema
SQL_KEYS = ("query", "SQL", "sql")  # Spider, BIRD, sqltune's examples and synthesized pairs


def stored_ddl(db_path: str | Path) -> dict[str, str]:
    """Table name -> its `CREATE TABLE` statement exactly as stored in `sqlite_master`."""
    conn = connect_readonly(db_path)
    try:
        result = run_query(
            conn,
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
            timeout=QUERY_TIMEOUT,
        )
    finally:
        conn.close()
    if not result.ok:
        raise DataError(f"{db_path}: cannot read the database schema ({result.error})")
    return {name: sql.strip() for name, sql in result.rows}


def literal(value: object) -> str:
    return "NULL" if value is None else sql_literal(value)


def insert_statement(table: Table) -> str:
    """The table's sample rows as one multi-row `INSERT` ('' when it has none)."""
    if not table.sample_rows:
        return ""
    columns = ", ".join(quote_identifier(column.name) for column in table.columns)
    rows = ",\n".join("  (" + ", ".join(literal(v) for v in row) + ")" for row in table.sample_rows)
    return f"INSERT INTO {quote_identifier(table.name)} ({columns}) VALUES\n{rows};"


def database_text(db_id: str, db_path: str | Path, rows_per_table: int) -> str:
    """One database as text: its stored DDL and up to `rows_per_table` rows of every table."""
    schema = attach_samples(schema_from_sqlite(db_path, db_id), rows=rows_per_table)
    ddl = stored_ddl(db_path)
    parts = [f"-- database: {db_id}"]
    for table in schema.tables:
        statement = ddl.get(table.name)
        if statement:
            parts.append(statement if statement.endswith(";") else statement + ";")
        rows = insert_statement(table)
        if rows:
            parts.append(rows)
    return "\n\n".join(parts)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def read_questions(path: str | Path) -> list[tuple[str, str, str]]:
    """(db_id, question, SQL) of a Spider-style file: a JSON list, or JSON lines (`.jsonl`)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = read_jsonl(path, "questions file")
    else:
        rows = read_json(path, "questions file")
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of questions")
    found = []
    for index, row in enumerate(rows, 1):
        sql = next((row[key] for key in SQL_KEYS if isinstance(row, dict) and key in row), None)
        question = row.get("question") if isinstance(row, dict) else None
        db_id = row.get("db_id") if isinstance(row, dict) else None
        if not all(isinstance(value, str) and value.strip() for value in (db_id, question, sql)):
            raise DataError(
                f"{path}: question {index}: expected text fields db_id, question and query (or SQL/sql)"
            )
        found.append((db_id, one_line(question), sql.strip()))
    return found


def questions_text(db_id: str, pairs: list[tuple[str, str]]) -> str:
    """The question/SQL pairs of one database, each as `-- question` then the SQL."""
    lines = [f"-- questions about database: {db_id}"]
    for question, sql in pairs:
        lines.append(f"-- {question}\n{sql if sql.endswith(';') else sql + ';'}")
    return "\n\n".join(lines)


def question_files(args: CorpusArguments) -> list[str]:
    return [path.strip() for path in (args.questions or "").split(",") if path.strip()]


def build_corpus(args: CorpusArguments) -> tuple[list[dict], dict]:
    """The corpus rows (module docstring) and their counts."""
    databases = find_databases(args.db_dir)
    wanted = [name.strip() for name in (args.databases or "").split(",") if name.strip()]
    if wanted:
        missing = sorted(set(wanted) - {db_id for db_id, _ in databases})
        if missing:
            raise ConfigError(f"databases: not in {args.db_dir}: {', '.join(missing)}")
        databases = [(db_id, path) for db_id, path in databases if db_id in wanted]
    by_db: dict[str, list[tuple[str, str]]] = defaultdict(list)
    question_count = 0
    for path in question_files(args):
        for db_id, question, sql in read_questions(path):
            if wanted and db_id not in wanted:
                continue
            by_db[db_id].append((question, sql))
            question_count += 1
    rows = []
    for db_id, path in databases:
        rows.append(
            {"text": database_text(db_id, path, args.rows_per_table), "db_id": db_id, "kind": "schema"}
        )
        if by_db.get(db_id):
            rows.append(
                {"text": questions_text(db_id, by_db.pop(db_id)), "db_id": db_id, "kind": "questions"}
            )
    without_database = sum(len(pairs) for pairs in by_db.values())
    for db_id in sorted(by_db):
        rows.append({"text": questions_text(db_id, by_db[db_id]), "db_id": db_id, "kind": "questions"})
    counts = {
        "databases": len(databases),
        "texts": len(rows),
        "questions": question_count,
        "questions_without_database": without_database,
        "characters": sum(len(row["text"]) for row in rows),
    }
    return rows, counts


def run_corpus(args: CorpusArguments) -> dict:
    """Build, write and register the corpus; return (and print) its summary."""
    if not args.db_dir:
        raise ConfigError("corpus needs db_dir=<folder of <db_id>/<db_id>.sqlite>")
    name = plain_name(args.dataset_name, "dataset_name")
    check_output_dir(args.output_dir)
    path = Path(args.output_dir) / f"{name}.jsonl"
    check_output(path, question_files(args), "corpus file")
    start = time.perf_counter()
    rows, counts = build_corpus(args)
    write_jsonl(path, rows)
    entry = {
        "file_name": path.name,
        "columns": {"prompt": "text"},
        "sqltune": {
            "source": "corpus",
            "db_dir": str(Path(args.db_dir).resolve()),
            "questions": [str(Path(p).resolve()) for p in question_files(args)],
            "rows_per_table": args.rows_per_table,
            "count": len(rows),
        },
    }
    register(args.output_dir, name, entry)
    summary = {"dataset": name, "file": str(path), **counts, "seconds": round(time.perf_counter() - start, 2)}
    print_summary(summary)
    return summary


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    table = RichTable(title=f"sqltune data corpus: {summary['dataset']}", show_header=False)
    table.add_row("corpus file", summary["file"])
    table.add_row("databases", str(summary["databases"]))
    table.add_row("texts", str(summary["texts"]))
    questions = str(summary["questions"])
    if summary["questions_without_database"]:
        questions += f" ({summary['questions_without_database']} about databases not in db_dir)"
    table.add_row("questions", questions)
    table.add_row("characters", f"{summary['characters']:,}")
    table.add_row("time", f"{summary['seconds']} s")
    Console(file=sys.stderr).print(table)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help((CorpusArguments,), "data corpus"))
        return 0
    (args,) = parse_args((CorpusArguments,), argv)
    run_corpus(args)
    return 0
