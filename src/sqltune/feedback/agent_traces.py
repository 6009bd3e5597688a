"""`sqltune data agent`: SQL agent conversations whose every observation comes from the database.

    sqltune data agent source_dataset=spider_train dataset_dir=data output_dir=data dataset_name=spider_agent
    sqltune data agent source_dataset=spider_train run_dir=saves/spider_sft \\
        predictions=saves/spider_sft/predictions/spider_train.jsonl dataset_name=spider_agent
    sqltune train dataset=spider_train,spider_agent ...

Each question of a registered SFT dataset (built by `sqltune data`, so its records come with their
examples and schemas) becomes conversations over its own database with the agent's three tools
(`sqltune.infer.tools`): the single-shot prompt opens the conversation, the model calls tools, each
call's observation follows, and the last turn is the gold SQL alone. Two kinds:

* direct: `describe_table` for each table the gold SQL uses (leave out with `inspect=false`), then
  `execute_sql(gold)` and its result, then the answer;
* repair: `execute_sql(wrong)` and what the database said (its error, or rows that are not the gold's),
  then `execute_sql(gold)` and its result, then the answer.

Every question with a database gets a direct trace. The wrong candidate of a repair is the SFT
model's own answer to the question where it is wrong (`predictions=`, a `sqltune predict` file on
this dataset, or with `run_dir` alone predicted here first), else a perturbed gold query written with
sqlglot: another column of the same table, a JOIN dropped with its ON, MAX<->MIN / SUM<->AVG, or a
comparison turned round (`>`<->`<`, `=`<->`!=`). Every wrong answer of the model gives a repair
trace; each other question gets one with probability `repair_ratio`. A candidate is kept only when
it really fails or really returns another result than the gold, judged by the evaluator's execution
match (`sqltune.evaluate.execution.execution_match`, the rule `sqltune eval` and the execution
reward use for "same result"), and when its observation does not read the same as the gold's.

Observations are `SqlTools.call` output on the question's database (SQLite files read-only with a
deadline, or with `db_url` the server's databases), never written by hand, so what the model reads
in training is what the agent loop shows it. Each question draws from its own random generator
(`seed` and its position), so the file does not depend on which other questions were built with it,
and a rerun writes the same bytes. A question whose gold SQL fails on its database is skipped and
counted, as is one without a database.

The records are sharegpt jsonl in LLaMA-Factory's agent format (`conversations` of human /
function_call / observation / gpt turns, `tools` as JSON text, `db_id`, `kind`), registered in
`output_dir/dataset_info.json` beside the entries already there with the source's prompt settings
and the counts under `"sqltune": {"agent": ...}`.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

from sqltune.args import AgentTracesArguments
from sqltune.config import format_help, parse_args
from sqltune.data.prompts import Prompt, tables_in_sql
from sqltune.data.records import Dataset, dataset_files, load_dataset, register
from sqltune.data.schema import Schema, Table
from sqltune.errors import ConfigError, DataError
from sqltune.evaluate.execution import Executor, Target, execution_match
from sqltune.files import (
    check_output,
    check_output_dir,
    plain_name,
    read_jsonl_lines,
    read_lines,
    write_jsonl,
)
from sqltune.infer.tools import TOOLS, SqlTools
from sqltune.models.encoding import prompt_turns
from sqltune.models.tools import ToolCall

NEEDED_BY = "sqltune data agent"
TOOLS_TEXT = json.dumps(TOOLS, ensure_ascii=False)
PERTURBATIONS = ("wrong_column", "dropped_join", "wrong_aggregate", "wrong_comparison")
REPAIR_SOURCES = ("model", *PERTURBATIONS)
TRIES = 8  # perturbed candidates executed per question at most
COLUMNS_PER_SITE = 3  # other columns tried in place of each column of the gold query
AGGREGATE_SWAPS = {exp.Max: exp.Min, exp.Min: exp.Max, exp.Sum: exp.Avg, exp.Avg: exp.Sum}
COMPARISON_SWAPS = {
    exp.GT: exp.LT,
    exp.LT: exp.GT,
    exp.GTE: exp.LTE,
    exp.LTE: exp.GTE,
    exp.EQ: exp.NEQ,
    exp.NEQ: exp.EQ,
}
TOOL_SETTINGS = {"max_rows": 100, "show_rows": 5, "values": 3}  # SqlTools' own defaults, recorded
GOLD_MAX_ROWS = 100_000  # the gold result's cap in the execution match (as the execution reward's)
LISTED_SKIPS = 10  # example ids kept per skip reason in the registry


# --- wrong candidates from the gold query -------------------------------------------------------------
def column_owner(column: exp.Column, aliases: dict[str, str], schema: Schema) -> Table | None:
    """The schema table a column of the query belongs to: by its qualifier, else the one table of
    the query that has a column of that name (None when that is not clear)."""
    if column.table:
        name = aliases.get(column.table.lower())
        return schema.table(name) if name else None
    tables = [schema.table(name) for name in dict.fromkeys(aliases.values())]
    owners = [t for t in tables if t is not None and t.column(column.name) is not None]
    return owners[0] if len(owners) == 1 else None


def wrong_columns(tree: exp.Expression, schema: Schema, rng: random.Random) -> list[exp.Expression]:
    """The query with one column replaced by another column of the same table."""
    aliases = {table.alias_or_name.lower(): table.name for table in tree.find_all(exp.Table)}
    variants = []
    for position, column in enumerate(tree.find_all(exp.Column)):
        table = column_owner(column, aliases, schema)
        if table is None or table.column(column.name) is None:
            continue
        others = [c.name for c in table.columns if c.name.lower() != column.name.lower()]
        for other in rng.sample(others, min(COLUMNS_PER_SITE, len(others))):
            variant = tree.copy()
            list(variant.find_all(exp.Column))[position].set("this", exp.to_identifier(other))
            variants.append(variant)
    return variants


def dropped_joins(tree: exp.Expression) -> list[exp.Expression]:
    """The query with one JOIN (and its ON) removed."""
    variants = []
    for position in range(len(list(tree.find_all(exp.Join)))):
        variant = tree.copy()
        list(variant.find_all(exp.Join))[position].pop()
        variants.append(variant)
    return variants


def swapped(tree: exp.Expression, swaps: dict) -> list[exp.Expression]:
    """The query with one node of a kind in `swaps` replaced by its counterpart (same arguments)."""
    kinds = tuple(swaps)
    variants = []
    for position, node in enumerate(tree.find_all(*kinds)):
        if type(node) not in swaps or node.args.get("expressions"):  # MAX(a, b) is a scalar function
            continue
        variant = tree.copy()
        target = list(variant.find_all(*kinds))[position]
        target.replace(swaps[type(target)](**target.args))
        variants.append(variant)
    return variants


def perturbations(gold: str, schema: Schema, dialect: str, rng: random.Random) -> list[tuple[str, str]]:
    """Wrong versions of the gold query as (kind, sql), in the order to try them: the kinds in a
    random order taking turns, each kind's variants shuffled. [] when sqlglot cannot read the gold."""
    try:
        tree = sqlglot.parse_one(gold, read=dialect)
    except sqlglot.errors.SqlglotError:
        return []
    variants = {
        "wrong_column": wrong_columns(tree, schema, rng),
        "dropped_join": dropped_joins(tree),
        "wrong_aggregate": swapped(tree, AGGREGATE_SWAPS),
        "wrong_comparison": swapped(tree, COMPARISON_SWAPS),
    }
    written: dict[str, list[str]] = {}
    for kind, trees in variants.items():
        sqls: list[str] = []
        for variant in trees:
            try:
                sql = variant.sql(dialect=dialect)
            except sqlglot.errors.SqlglotError:
                continue
            if sql not in sqls and sql.strip() != gold.strip():
                sqls.append(sql)
        rng.shuffle(sqls)
        written[kind] = sqls
    kinds = [kind for kind in PERTURBATIONS if written[kind]]
    rng.shuffle(kinds)
    rounds = itertools.zip_longest(*([(kind, sql) for sql in written[kind]] for kind in kinds))
    return [pair for turn in rounds for pair in turn if pair is not None]


# --- conversations ------------------------------------------------------------------------------------
def opening(record: dict) -> list[dict]:
    """The turns before the agent acts: the single-shot prompt (a multi-turn question's earlier
    turns with their SQL answers, then the question), so the agent starts where the single-shot
    model starts."""
    history = [(str(q), str(a)) for q, a in record.get("history") or []]
    prompt = Prompt(record["instruction"], record["input"], history)
    turns = []
    for user, answer in prompt_turns(prompt, None):
        turns.append({"from": "human", "value": user})
        if answer is not None:
            turns.append({"from": "gpt", "value": answer})
    return turns


def tool_turns(tools: SqlTools, name: str, **arguments) -> list[dict]:
    """One call and what the tool said to it, on the question's database."""
    call = ToolCall(name, arguments)
    return [
        {"from": "function_call", "value": call.as_json()},
        {"from": "observation", "value": tools.call(call)},
    ]


def trace_record(turns: list[dict], db_id: str, kind: str) -> dict:
    return {"conversations": turns, "tools": TOOLS_TEXT, "db_id": db_id, "kind": kind}


def failed(tools: SqlTools) -> bool:
    """Whether the last execute_sql failed (more rows than shown is a result, not a failure)."""
    result = tools.last_result
    return result is None or result.error not in (None, "too many rows")


@dataclass
class Candidate:
    """A wrong query that made it into a repair trace, and what running it gave."""

    source: str  # one of REPAIR_SOURCES
    sql: str
    observation: str
    outcome: str  # fails or wrong_result


@dataclass
class Tally:
    """The counts of a build (see `summary`)."""

    questions: int = 0
    kinds: Counter = field(default_factory=lambda: Counter(direct=0, repair=0))
    repair_from: Counter = field(default_factory=lambda: Counter(dict.fromkeys(REPAIR_SOURCES, 0)))
    outcomes: Counter = field(default_factory=lambda: Counter(fails=0, wrong_result=0))
    skipped: Counter = field(default_factory=Counter)
    skipped_ids: dict[str, list[str]] = field(default_factory=dict)
    no_repair: Counter = field(default_factory=Counter)
    model: Counter = field(default_factory=Counter)

    def skip(self, reason: str, example_id: str) -> None:
        self.skipped[reason] += 1
        listed = self.skipped_ids.setdefault(reason, [])
        if len(listed) < LISTED_SKIPS:
            listed.append(example_id)

    def summary(self) -> dict:
        return {
            "questions": self.questions,
            "records": sum(self.kinds.values()),
            "kinds": dict(self.kinds),
            "repair_from": dict(self.repair_from),
            "candidate_outcomes": dict(self.outcomes),
            "skipped": dict(self.skipped),
            "skipped_ids": self.skipped_ids,
            "no_repair": dict(self.no_repair),
            "model": dict(self.model),
        }


class Builder:
    """The traces of one question at a time, over its database's tools."""

    def __init__(self, args: AgentTracesArguments, dialect: str, executor: Executor, tally: Tally) -> None:
        self.args = args
        self.dialect = dialect
        self.executor = executor
        self.tally = tally
        self._tools: SqlTools | None = None  # the database whose tables `_described` holds
        self._described: dict[str, list[dict]] = {}

    def judge(
        self, tools: SqlTools, target: Target, source: str, sql: str, gold: str, gold_observation: str
    ) -> tuple[str, Candidate | None]:
        """What a candidate came to: ("match", None) when it returns the gold result, ("same
        observation", None) when it does not but its observation reads like the gold's, else
        ("wrong", the candidate), which really fails or returns another result."""
        if execution_match(self.executor, [target], sql, gold).match:
            return "match", None
        observation = tools.call(ToolCall("execute_sql", {"sql": sql}))
        if observation == gold_observation:
            return "same observation", None
        return "wrong", Candidate(source, sql, observation, "fails" if failed(tools) else "wrong_result")

    def model_candidate(
        self, tools, target, answer: str | None, gold: str, gold_obs: str
    ) -> Candidate | None:
        """The model's own answer when it is wrong (what each answer came to is counted in `tally.model`)."""
        if answer is None or not answer.strip():
            self.tally.model["not answered" if answer is None else "empty"] += 1
            return None
        verdict, candidate = self.judge(tools, target, "model", answer, gold, gold_obs)
        self.tally.model[{"match": "right", "wrong": "wrong (used)"}.get(verdict, "wrong, " + verdict)] += 1
        return candidate

    def perturbed_candidate(
        self, tools, target, schema: Schema, gold: str, gold_obs: str, rng
    ) -> Candidate | None:
        variants = perturbations(gold, schema, self.dialect, rng)
        for kind, sql in variants[:TRIES]:
            _, candidate = self.judge(tools, target, kind, sql, gold, gold_obs)
            if candidate is not None:
                return candidate
        reason = "no perturbation fails or differs" if variants else "no perturbation of the gold SQL"
        self.tally.no_repair[reason] += 1
        return None

    def described(self, tools: SqlTools, schema: Schema, gold: str) -> list[dict]:
        """describe_table of each table the gold query uses, in the schema's order. A table's
        observation is asked once per database and reused (the same call gives the same text)."""
        if tools is not self._tools:
            self._tools, self._described = tools, {}
        used = tables_in_sql(gold, schema)
        turns = []
        for table in (t.name for t in schema.tables if t.name in used):
            if table not in self._described:
                self._described[table] = tool_turns(tools, "describe_table", table=table)
            turns += self._described[table]
        return turns

    def question(
        self, index: int, example, record: dict, schema: Schema, tools: SqlTools, target, answer: str | None
    ) -> list[dict]:
        """The direct trace of one question and, where a wrong candidate is found, its repair trace
        ([] when the gold query fails)."""
        rng = random.Random(f"{self.args.seed}:{index}")
        wants_repair = rng.random() < self.args.repair_ratio  # drawn first: the same whatever follows
        gold = record["output"]
        gold_turns = tool_turns(tools, "execute_sql", sql=gold)
        if failed(tools):
            self.tally.skip("gold SQL fails", example.id)
            return []
        start, answer_turn = opening(record), {"from": "gpt", "value": gold}
        inspect = self.described(tools, schema, gold) if self.args.inspect else []
        records = [trace_record([*start, *inspect, *gold_turns, answer_turn], example.db_id, "direct")]
        gold_obs = gold_turns[1]["value"]
        candidate = None
        if self.args.run_dir or self.args.predictions:
            candidate = self.model_candidate(tools, target, answer, gold, gold_obs)
        if candidate is None and wants_repair:
            candidate = self.perturbed_candidate(tools, target, schema, gold, gold_obs, rng)
        if candidate is not None:
            call = ToolCall("execute_sql", {"sql": candidate.sql})
            tried = [
                {"from": "function_call", "value": call.as_json()},
                {"from": "observation", "value": candidate.observation},
            ]
            records.append(trace_record([*start, *tried, *gold_turns, answer_turn], example.db_id, "repair"))
            self.tally.repair_from[candidate.source] += 1
            self.tally.outcomes[candidate.outcome] += 1
        for made in records:
            self.tally.kinds[made["kind"]] += 1
        return records


# --- databases and the model's answers ----------------------------------------------------------------
def database_targets(dataset: Dataset, db_ids: list[str], db_url: str | None, timeout: float) -> dict:
    """db_id -> where its SQL runs (None when it has no database): the server database of `db_url`,
    else the schema's SQLite file or `<db_dir>/<db_id>/<db_id>.sqlite` of the dataset's db_dir. A
    dataset built in a server's dialect needs `db_url` (the rule of `sqltune data pairs`)."""
    from sqltune.db import unreachable
    from sqltune.db.urls import for_database
    from sqltune.train.rewards import reward_databases

    if db_url:
        failed_ids = unreachable(db_url, db_ids, timeout)
        if failed_ids:
            raise DataError(f"db_url: database not reachable for db_id(s): {'; '.join(failed_ids)}")
        return {db_id: for_database(db_url, db_id) for db_id in db_ids}
    info = dataset.entry.get("sqltune", {})
    folder = None
    if info.get("db_dir") or (info.get("dialect") or {}).get("dialect", "sqlite") != "sqlite":
        folder = reward_databases({dataset.name: dataset.entry}, NEEDED_BY)["db_dir"]
    targets = {}
    for db_id in db_ids:
        schema = dataset.schemas.get(db_id)
        files = [Path(schema.db_path)] if schema and schema.db_path else []
        files += [folder / db_id / f"{db_id}.sqlite"] if folder else []
        targets[db_id] = next((path for path in files if path.is_file()), None)
    return targets


def read_answers(path: str | Path, examples: list) -> dict[int, str]:
    """index -> the model's SQL, from a predictions file of `sqltune predict` on these questions (rows
    past them are ignored: a file of the whole dataset serves its first N)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"predictions: file not found: {path}")
    answers = {}
    for line, row in read_jsonl_lines(read_lines(path, "predictions file"), path):
        index = row.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(row.get("sql"), str):
            raise DataError(
                f"{path}: line {line.number} has no integer 'index' and 'sql' (not sqltune predict's)"
            )
        if index >= len(examples):
            continue
        example = examples[index]
        if (row.get("db_id"), row.get("question")) != (example.db_id, example.question):
            raise ConfigError(
                f"{path}: line {line.number} answers another question than the dataset's #{index}"
            )
        answers[index] = row["sql"]
    return answers


def predict_answers(args: AgentTracesArguments, name: str, count: int) -> Path:
    """Answer the first `count` questions with the run (greedy, `sqltune predict`'s path) into
    `<output_dir>/<name>.predictions.jsonl`, resuming a file already there."""
    from sqltune.args import GeneratingArguments, ModelArguments, PredictArguments
    from sqltune.infer.command import run_predict

    output = Path(args.output_dir) / f"{name}.predictions.jsonl"
    predict = PredictArguments(
        run_dir=args.run_dir,
        dataset=args.source_dataset,
        dataset_dir=args.dataset_dir,
        output=str(output),
        max_samples=count,
        seed=args.seed,
    )
    run_predict(ModelArguments(), predict, GeneratingArguments(max_new_tokens=args.max_new_tokens))
    return output


# --- the command --------------------------------------------------------------------------------------
def check_outputs(args: AgentTracesArguments) -> tuple[str, Path]:
    """The agent dataset's name and file, once it is known that writing it destroys no input."""
    if not args.source_dataset:
        raise ConfigError(
            "source_dataset: give the registered dataset to build traces from (e.g. spider_train)"
        )
    name = plain_name(args.dataset_name or f"{args.source_dataset}_agent", "dataset_name")
    same_folder = Path(args.output_dir).resolve() == Path(args.dataset_dir).resolve()
    if same_folder and name == args.source_dataset:
        raise ConfigError(f"dataset_name: '{name}' would replace the dataset it is built from")
    check_output_dir(args.output_dir)
    inputs = [*dataset_files(args.dataset_dir, args.source_dataset)[:3], args.predictions]
    path = check_output(Path(args.output_dir) / f"{name}.jsonl", inputs, "output file")
    return name, path


def build_traces(args: AgentTracesArguments, quiet: bool = False) -> dict:
    """Build, write and register the agent dataset (see the module docstring); return its registry
    block `sqltune.agent` (also printed as a table, unless `quiet`)."""
    from tqdm import tqdm

    from sqltune.db.urls import hide_password
    from sqltune.infer.questions import dataset_examples

    began = time.perf_counter()
    name, path = check_outputs(args)
    dataset = load_dataset(args.dataset_dir, args.source_dataset)
    examples = dataset_examples(dataset, args.max_samples)
    records = dataset.records[: len(examples)]
    targets = database_targets(dataset, sorted({e.db_id for e in examples}), args.db_url, args.timeout)
    predictions = args.predictions
    if args.run_dir and not predictions:
        predictions = str(predict_answers(args, name, len(examples)))
    answers = read_answers(predictions, examples) if predictions else {}
    tally = Tally(questions=len(examples))
    executor = Executor(args.timeout, GOLD_MAX_ROWS)
    builder = Builder(args, dataset.prompt_args.dialect, executor, tally)
    traces: dict[int, list[dict]] = {}
    order = sorted(range(len(examples)), key=lambda i: (examples[i].db_id, i))  # one database open at a time
    bar = tqdm(total=len(order), unit="q", desc="agent traces", disable=quiet)
    try:
        for db_id, group in itertools.groupby(order, key=lambda i: examples[i].db_id):
            indices = list(group)
            target, schema = targets[db_id], dataset.schemas.get(db_id)
            if target is None or schema is None:
                for index in indices:
                    tally.skip("no database", examples[index].id)
                bar.update(len(indices))
                continue
            with SqlTools(target, schema, timeout=args.timeout, **TOOL_SETTINGS) as tools:
                for index in indices:
                    answer = answers.get(index)
                    traces[index] = builder.question(
                        index, examples[index], records[index], schema, tools, target, answer
                    )
                    bar.update(1)
    finally:
        bar.close()
        executor.close()
    written = [record for index in sorted(traces) for record in traces[index]]
    write_jsonl(path, written)
    where = {"db_url": hide_password(args.db_url)} if args.db_url else {}
    agent = {
        "source_dataset": args.source_dataset,
        **where,
        "run_dir": str(Path(args.run_dir).resolve()) if args.run_dir else None,
        "predictions": str(Path(predictions).resolve()) if predictions else None,
        "inspect": args.inspect,
        "repair_ratio": args.repair_ratio,
        "seed": args.seed,
        "max_samples": args.max_samples,
        "tools": {"timeout": args.timeout, **TOOL_SETTINGS},
        "judged_by": "sqltune.evaluate.execution.execution_match",
        **tally.summary(),
    }
    entry = {
        "file_name": path.name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "tools": "tools"},
        "sqltune": {"prompt": dataset.entry.get("sqltune", {}).get("prompt", {}), "agent": agent},
    }
    register(args.output_dir, name, entry)
    if not quiet:
        print_summary(name, path, agent, time.perf_counter() - began)
    return agent


def print_summary(name: str, path: Path, agent: dict, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    def listed(counts: dict) -> str:
        return ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "0"

    table = Table(title=f"sqltune data agent: {name}", show_header=False)
    table.add_row("source dataset", agent["source_dataset"])
    table.add_row("questions", str(agent["questions"]))
    table.add_row("records", f"{agent['records']} ({listed(agent['kinds'])})")
    table.add_row("repairs from", listed(agent["repair_from"]))
    table.add_row("repair candidates", listed(agent["candidate_outcomes"]))
    table.add_row("no repair", listed(agent["no_repair"]))
    if agent["model"]:
        table.add_row("model's answers", listed(agent["model"]))
    table.add_row("skipped", listed(agent["skipped"]))
    table.add_row("records file", str(path))
    table.add_row("time", f"{seconds:.1f} s")
    Console(file=sys.stderr).print(table)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help((AgentTracesArguments,), "data agent"))
        return 0
    (args,) = parse_args((AgentTracesArguments,), argv)
    build_traces(args)
    return 0
