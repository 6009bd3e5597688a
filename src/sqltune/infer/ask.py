"""`sqltune ask`: ask a live database a question; get the SQL and its rows.

    sqltune ask --db shop.sqlite "how many orders shipped last month?"
    sqltune ask --db shop.sqlite run_dir=saves/quickstart "which customer spent the most?"

    sqltune ask --db postgresql://user:pw@host/shop "how many customers?"
    sqltune ask --agent --db shop.sqlite run_dir=saves/shop_agent "which customer spent the most?"

Without `run_dir` (and without `model_name_or_path`/`adapter_name_or_path`), the model is a
fine-tuned one found by `sqltune.run_index`: the run `configs/own_database.yaml` made for this
database, else the quickstart's; with neither, a one-line error gives the command that makes one,
since the base model cannot write SQL. The database's schema is introspected, the question is
prompted exactly as the model was trained (the run's prompt options and template), and the SQL is
executed read-only with a timeout and a row limit. The SQL goes to stdout first, then the rows as a
table. The exit status is 0 when the query ran, 1 when the model's answer was not SQL (said in one
line) or its SQL failed.

A SQLite file (or `sqlite:///` URL) is opened read-only by `sqltune.db`. A PostgreSQL or
MySQL/MariaDB URL is introspected by `sqltune.data.introspect.schema_from_url`, and the SQL runs
through `sqltune.db.server`: one query, in a read-only transaction with a server-side time limit
and row cap, rolled back.

With `--agent` (or `decoding=agent`) the model may first call tools on the database (list its
tables, describe one, run a query: `sqltune.infer.agent`, at most `max_turns` responses, each query
within `timeout`); the tool steps are shown on stderr before the SQL and its rows.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from sqltune.args import AskArguments, GeneratingArguments, ModelArguments, PromptArguments
from sqltune.config import collect, format_help, parse_args
from sqltune.db import QueryResult, execute
from sqltune.errors import ConfigError
from sqltune.infer.agent import AgentAnswer

GROUPS = (AskArguments, GeneratingArguments, ModelArguments, PromptArguments)
MODEL_KEYS = ("run_dir", "model_name_or_path", "adapter_name_or_path")
QUERY_START = re.compile(r"(select|with)\b", re.I)
NOT_SQL = "not SQL"
PREVIEW_CHARS = 60


@dataclass
class Reply:
    sql: str
    raw: str
    result: QueryResult
    agent: AgentAnswer | None = None  # the agent's conversation, with `--agent`

    @property
    def is_sql(self) -> bool:
        return self.result.error != NOT_SQL


def check_input(args: AskArguments) -> None:
    """A database and a question, before any model is looked for or loaded."""
    from sqltune.data.introspect import is_url

    if not args.db or not args.question:
        raise ConfigError('give a database and a question: sqltune ask --db my.sqlite "question"')
    if not is_url(args.db) and not Path(args.db).is_file():
        raise ConfigError(f"db: no such SQLite file: {args.db}")


def read_schema(db: str, prompt: PromptArguments):
    """The schema of a SQLite file or SQLAlchemy URL, with sample values when the prompt wants them."""
    from sqltune.data.introspect import is_url, schema_from_sqlite, schema_from_url
    from sqltune.data.records import prepare_schemas

    schema = schema_from_url(db, values=prompt.sample_values) if is_url(db) else schema_from_sqlite(db)
    return prepare_schemas({schema.db_id: schema}, {schema.db_id}, prompt)[schema.db_id]


def choose_run(args: AskArguments) -> None:
    """Ask a fine-tuned run rather than the base model, which cannot write SQL (see the module
    docstring); says on stderr which run."""
    from sqltune.run_index import fine_tuned_run

    args.run_dir = str(fine_tuned_run(args.db))
    print(f"using the fine-tuned run {args.run_dir} (run_dir=... chooses another)", file=sys.stderr)


class Asker:
    """A model held open to answer questions about databases: `sqltune ask`, the API server's
    `/v1/sql` and the web UI's Ask tab all use it.

    Each question is prompted exactly as the model was trained (the run's prompt options and
    template, within its token budget) over the schema read from the database itself (cached per
    database), and the SQL runs read-only with a time limit and a row cap (`sqltune.db`).
    `ask_many` answers several questions in one batched generation.
    """

    def __init__(
        self,
        source,
        settings: GeneratingArguments,
        prompt: PromptArguments | None = None,
        dtype: str = "auto",
        cutoff_len: int | None = None,
        batch_size: int = 1,
        backend: str = "hf",
        **engine_options,
    ):
        from sqltune.infer.engine import open_engine
        from sqltune.infer.questions import prompt_arguments_from_card, token_budget
        from sqltune.models.templates import get_template

        self.source = source
        self.settings = settings
        self.prompt_args = prompt_arguments_from_card(source.card) or prompt or PromptArguments()
        self.engine = open_engine(source, backend, dtype=dtype, batch_size=batch_size, **engine_options)
        self.template = get_template(source.template, self.engine.tokenizer)
        self.budget = token_budget(cutoff_len, source.card, settings.max_new_tokens)
        self._schemas: dict[str, object] = {}

    def schema(self, db: str):
        """The database's schema as prompts show it (read once per database)."""
        if db not in self._schemas:
            self._schemas[db] = read_schema(db, self.prompt_args)
        return self._schemas[db]

    def fitted(self, db: str, question: str, budget: int):
        """The question's prompt over the database's schema, shortened to `budget` tokens."""
        from sqltune.data.example import Example
        from sqltune.models.encoding import fit_to_budget

        schema = self.schema(db)
        example = Example(id="ask", db_id=schema.db_id, question=question, sql="")
        return fit_to_budget(example, schema, self.prompt_args, self.template, self.engine.tokenizer, budget)

    def prompt_ids(self, db: str, question: str) -> list[int]:
        return self.fitted(db, question, self.budget).prompt_ids

    def agent_replies(self, questions: list[tuple[str, str]], settings: GeneratingArguments, timeout: float):
        """(index, AgentAnswer) pairs of the agent's conversations about (database, question) pairs."""
        from sqltune.infer.agent import Agent, AgentTask, opening_messages, tools_overhead

        fit = self.budget - tools_overhead(self.template, self.engine.tokenizer)
        tasks = [
            AgentTask(
                opening_messages(self.fitted(db, question, fit).prompt),
                self.schema(db).db_path or db,
                self.schema(db),
            )
            for db, question in questions
        ]
        agent = Agent(self.engine, self.template, settings, self.budget, timeout)
        for batch in agent.run(tasks):
            yield from batch

    def ask_many(
        self,
        questions: list[tuple[str, str]],
        timeout: float = 10.0,
        max_rows: int = 20,
        settings: GeneratingArguments | None = None,
        execute_sql: bool = True,
    ) -> list[Reply]:
        """Answer (database, question) pairs together; replies in the same order."""
        from sqltune.infer.answers import answer

        settings = settings or self.settings
        # a server URL has no db_path: execution-guided candidates run on the server itself
        targets = [self.schema(db).db_path or db for db, _ in questions]
        if settings.decoding == "agent":
            answered = self.agent_replies(questions, settings, timeout)
        else:
            prompts = [self.prompt_ids(db, question) for db, question in questions]
            answered = (pair for batch in answer(self.engine, prompts, settings, targets) for pair in batch)
        replies: list[Reply | None] = [None] * len(questions)
        for index, reply in answered:
            if not QUERY_START.match(reply.sql):
                result = QueryResult(error=NOT_SQL)
            elif execute_sql:
                result = execute(targets[index], reply.sql, timeout=timeout, max_rows=max_rows)
            else:
                result = QueryResult()
            agent = reply if isinstance(reply, AgentAnswer) else None
            replies[index] = Reply(reply.sql, reply.raw, result, agent)
        return replies

    def ask(self, db: str, question: str, timeout: float = 10.0, max_rows: int = 20) -> Reply:
        return self.ask_many([(db, question)], timeout, max_rows)[0]


def ask(
    args: AskArguments, settings: GeneratingArguments, model_args: ModelArguments, prompt: PromptArguments
) -> Reply:
    from sqltune.infer.engine import model_source

    check_input(args)
    if args.agent:
        settings = dataclasses.replace(settings, decoding="agent")
    source = model_source(args.run_dir, model_args)
    asker = Asker(source, settings, prompt, dtype=args.infer_dtype, cutoff_len=args.cutoff_len)
    return asker.ask(args.db, args.question, args.timeout, args.max_rows)


def preview(text: str) -> str:
    """The start of a model's answer on one short line, however long and many-lined it is."""
    flat = " ".join(text.split())
    if not flat:
        return "(it is empty)"
    return repr(flat if len(flat) <= PREVIEW_CHARS else flat[:PREVIEW_CHARS] + "...")


def show_steps(agent: AgentAnswer) -> None:
    """The agent's tool calls and their observations on stderr, then why it stopped."""
    for role, content in agent.trajectory:
        if role == "function_call":
            print(f"> {content}", file=sys.stderr)
        elif role == "observation":
            print("  " + content.replace("\n", "\n  "), file=sys.stderr)
    turns = f"{agent.turns} turn{'s' if agent.turns != 1 else ''}"
    print(f"agent: {agent.stop_reason} after {turns}, {agent.tool_calls} tool call(s)", file=sys.stderr)


def show(reply: Reply, max_rows: int) -> None:
    from rich.console import Console
    from rich.table import Table

    if reply.agent is not None:
        show_steps(reply.agent)
    if not reply.is_sql:
        print(f"the model's answer is not SQL: {preview(reply.raw)}", file=sys.stderr)
        return
    print(reply.sql)
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
    check_input(args)
    if not set(MODEL_KEYS) & set(collect(argv, GROUPS, positional="question")[0]):
        choose_run(args)
    reply = ask(args, settings, model_args, prompt)
    show(reply, args.max_rows)
    return 0 if reply.result.ok or reply.result.error == "too many rows" else 1
