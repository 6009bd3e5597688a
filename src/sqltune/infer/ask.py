"""`sqltune ask`: ask a live database a question; get the SQL and its rows.

    sqltune ask --db shop.sqlite "how many orders shipped last month?"
    sqltune ask --db shop.sqlite run_dir=saves/quickstart "which customer spent the most?"

The database's schema is introspected, the question is prompted exactly as the model was trained
(a run directory's prompt options and template; the embedded default model otherwise), and the SQL
is executed read-only with a timeout and a row limit. The SQL goes to stdout first, then the rows
as a table. The exit status is 0 when the query ran, 1 when the model's SQL failed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sqltune.args import AskArguments, GeneratingArguments, ModelArguments, PromptArguments
from sqltune.config import format_help, parse_args
from sqltune.db import QueryResult, execute
from sqltune.errors import ConfigError

GROUPS = (AskArguments, GeneratingArguments, ModelArguments, PromptArguments)


@dataclass
class Reply:
    sql: str
    raw: str
    result: QueryResult


def sqlite_path(db: str) -> Path:
    """The SQLite file behind `db` (a path or a sqlite:/// URL)."""
    path = Path(db[len("sqlite:///") :]) if db.startswith("sqlite:///") else Path(db)
    if "://" in str(path):
        raise ConfigError(f"db: only SQLite files and sqlite:/// URLs are supported, got {db}")
    if not path.is_file():
        raise ConfigError(f"db: no such SQLite file: {path}")
    return path


def ask(
    args: AskArguments, settings: GeneratingArguments, model_args: ModelArguments, prompt: PromptArguments
) -> Reply:
    from sqltune.data.example import Example
    from sqltune.data.introspect import schema_from_sqlite
    from sqltune.data.records import prepare_schemas
    from sqltune.infer.answers import answer
    from sqltune.infer.engine import model_source, open_engine
    from sqltune.infer.questions import prompt_arguments_from_card, token_budget
    from sqltune.models.encoding import fit_to_budget
    from sqltune.models.templates import get_template

    if not args.db or not args.question:
        raise ConfigError('give a database and a question: sqltune ask --db my.sqlite "question"')
    path = sqlite_path(args.db)
    source = model_source(args.run_dir, model_args)
    prompt_args = prompt_arguments_from_card(source.card) or prompt
    schema = schema_from_sqlite(path)
    schema = prepare_schemas({schema.db_id: schema}, {schema.db_id}, prompt_args)[schema.db_id]
    engine = open_engine(source, dtype=args.infer_dtype, batch_size=1)
    template = get_template(source.template, engine.tokenizer)
    budget = token_budget(args.cutoff_len, source.card, settings.max_new_tokens)
    example = Example(id="ask", db_id=schema.db_id, question=args.question, sql="")
    fitted = fit_to_budget(example, schema, prompt_args, template, engine.tokenizer, budget)
    ((_, reply),) = next(answer(engine, [fitted.prompt_ids], settings, [str(path)]))
    if not reply.sql:
        return Reply("", reply.raw, QueryResult(error=f"no SQL in the model's answer {reply.raw!r}"))
    return Reply(reply.sql, reply.raw, execute(path, reply.sql, timeout=args.timeout, max_rows=args.max_rows))


def show(reply: Reply, max_rows: int) -> None:
    from rich.console import Console
    from rich.table import Table

    print(reply.sql or "(the model wrote no SQL)")
    console = Console(file=sys.stderr)
    result = reply.result
    if not result.ok and result.error != "too many rows":
        console.print(f"[red]the query failed:[/red] {result.error}")
        return
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    Console().print(table)
    more = f"first {max_rows} rows shown" if result.error == "too many rows" else f"{len(result.rows)} row(s)"
    console.print(f"{more}, {result.seconds:.3f} s")


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "ask"))
        return 0
    args, settings, model_args, prompt = parse_args(GROUPS, argv, positional="question")
    reply = ask(args, settings, model_args, prompt)
    show(reply, args.max_rows)
    return 0 if reply.result.ok or reply.result.error == "too many rows" else 1
