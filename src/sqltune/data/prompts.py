"""Prompt formats: how a schema and a question become instruction and input text.

* `dbgpt` reproduces DB-GPT-Hub's records byte for byte (natural-language sentences about tables,
  columns and keys), so models and numbers stay comparable with that project.
* `ddl` writes the schema as `CREATE TABLE` statements, optionally with sample rows.
* `compact` writes one line per table, `table: column, column (PK), column (-> table.column)`, with the
  `ddl` instruction: about half the tokens of `ddl`, so training and prediction are cheaper (the
  quickstart uses it).

With `dialect=postgres|mysql` the instructions name that dialect where they say SQLite or SQL, and
`ddl` and `compact` write names and column types as that dialect does (`sqltune.data.dialect`);
SQLite's prompts are unchanged.

Both can add sample values, a one-shot example and a schema length budget. When a prompt is too
long, `fit_prompt` shortens the schema, never the question: first it drops sample values, then the
tables least related to the question (never a table the gold SQL uses). Training and prediction
call the same function, so a model sees the same kind of schema in both. This is our own code:
no library builds Text-to-SQL prompts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqltune.args import PromptArguments
from sqltune.data.dialect import DIALECT_NAMES
from sqltune.data.example import Example
from sqltune.data.schema import Schema, Table
from sqltune.data.transpile import column_type, identifier

DBGPT_INSTRUCTION = (
    "I want you to act as a SQL terminal in front of an example database, "
    "you need only to return the sql command to me.Below is an instruction that describes a task, "
    'Write a response that appropriately completes the request.\n"\n##Instruction:\n{}\n'
)
DBGPT_ONE_SHOT_INSTRUCTION = (
    "I want you to act as a SQL terminal in front of an example database. "
    "You need only to return the sql command to me. "
    "First, I will show you few examples of an instruction followed by the correct SQL response. "
    "Then, I will give you a new instruction, and you should write the SQL response that appropriately "
    "completes the request.\n### Example1 Instruction:\n"
    "The database contains tables such as employee, salary, and position. "
    "Table employee has columns such as employee_id, name, age, and position_id. employee_id is the primary key. "
    "Table salary has columns such as employee_id, amount, and date. employee_id is the primary key. "
    "Table position has columns such as position_id, title, and department. position_id is the primary key. "
    "The employee_id of salary is the foreign key of employee_id of employee. "
    "The position_id of employee is the foreign key of position_id of position.\n"
    "### Example1 Input:\nList the names and ages of employees in the 'Engineering' department.\n\n"
    "### Example1 Response:\nSELECT employee.name, employee.age FROM employee JOIN position ON "
    "employee.position_id = position.position_id WHERE position.department = 'Engineering';\n"
    "###New Instruction:\n{}\n"
)
DBGPT_INPUT = "###Input:\n{}\n\n###Response:"

DDL_INSTRUCTION = (
    "You are a SQLite expert. Given the database schema below, write one SQL query that answers "
    "the question. Return only the SQL.\n\n{}\n"
)
DDL_ONE_SHOT = (
    "Example:\nCREATE TABLE employee (\n  employee_id INTEGER,\n  name TEXT,\n  department TEXT,\n"
    "  PRIMARY KEY (employee_id)\n);\n-- Question: How many employees work in Engineering?\n"
    "SELECT count(*) FROM employee WHERE department = 'Engineering'\n\n"
)
DDL_INPUT = "-- Question: {}\nSQL:"
# Where the templates name SQLite or SQL, and how they read for another dialect ({} is its name).
DIALECT_WORDS = (
    ("a SQLite expert", "a {} expert"),
    ("one SQL query", "one {} query"),
    ("a SQL terminal", "a {} terminal"),
    ("the sql command", "the {} command"),
    ("the SQL response", "the {} response"),
)

_MAX_VALUE_CHARS = 40


@dataclass
class Prompt:
    instruction: str
    input: str
    history: list[tuple[str, str]] = field(default_factory=list)  # rendered (input, SQL) per earlier turn

    @property
    def text(self) -> str:
        return self.instruction + "".join(q + a for q, a in self.history) + self.input


@dataclass
class Shortening:
    """What `fit_prompt` removed to make a prompt fit."""

    values_dropped: bool = False
    tables_dropped: int = 0
    fits: bool = True


def sql_literal(value: object) -> str:
    if isinstance(value, str):
        text = value if len(value) <= _MAX_VALUE_CHARS else value[:_MAX_VALUE_CHARS] + "..."
        return "'" + text.replace("'", "''").replace("\n", " ") + "'"
    return str(value)


def quote_identifier(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def schema_name(name: str, dialect: str, table: bool = False) -> str:
    """A table (`table=True`) or column name as `ddl` and `compact` write it in the prompt's dialect."""
    return quote_identifier(name) if dialect == "sqlite" else identifier(name, dialect, table)


def in_dialect(template: str, dialect: str) -> str:
    """A template as it reads for `dialect`; SQLite's text is unchanged (DB-GPT-Hub's bytes)."""
    if dialect == "sqlite":
        return template
    for old, new in DIALECT_WORDS:
        template = template.replace(old, new.format(DIALECT_NAMES[dialect]))
    return template


# ---- dbgpt -------------------------------------------------------------------------------------------
def _values(column, args: PromptArguments) -> str:
    """Up to `sample_values` of the column's attached values as SQL literals ('' when none)."""
    return ", ".join(sql_literal(v) for v in column.values[: args.sample_values])


def _dbgpt_column(column, args: PromptArguments) -> str:
    values = _values(column, args)
    return f"{column.name} ({values})" if values else column.name


def dbgpt_schema(schema: Schema, args: PromptArguments) -> str:
    """DB-GPT-Hub's schema sentences (sql_data_process.py), keys in tables.json order."""
    text = f"{schema.db_id} contains tables such as {', '.join(schema.table_names)}. "
    for table in schema.tables:
        columns = ", ".join(_dbgpt_column(c, args) for c in table.columns)
        text += f"Table {table.name} has columns such as {columns}. "
        for key in table.primary_keys:
            if len(key) == 1:
                text += f"{key[0]} is the primary key.\n"
            else:
                text += f"The combination of ({', '.join(key)}) are the primary key.\n"
    if args.include_foreign_keys:
        for fk in schema.foreign_keys:
            text += (
                f"The {fk.column} of {fk.table} is the foreign key of {fk.ref_column} of {fk.ref_table}.\n"
            )
    return text


# ---- ddl ---------------------------------------------------------------------------------------------
def _ddl_table(table: Table, schema: Schema, args: PromptArguments) -> str:
    def name(text: str, table: bool = False) -> str:
        return schema_name(text, args.dialect, table)

    lines = []
    for column in table.columns:
        line = "  " + name(column.name)
        if args.include_types and column.type:
            line += " " + column_type(column.type, args.dialect)
        values = _values(column, args)
        if values:
            line += " -- e.g. " + values
        lines.append(line)
    constraints = [f"  PRIMARY KEY ({', '.join(name(c) for c in key)})" for key in table.primary_keys]
    if args.include_foreign_keys:
        constraints += [
            f"  FOREIGN KEY ({name(fk.column)}) REFERENCES {name(fk.ref_table, True)}({name(fk.ref_column)})"
            for fk in schema.foreign_keys
            if fk.table == table.name
        ]
    # A comment line cannot carry the separating comma, so commas go before any "-- e.g." comment.
    body = lines + constraints
    rendered = []
    for index, line in enumerate(body):
        comma = "," if index < len(body) - 1 else ""
        head, sep, comment = line.partition(" -- e.g. ")
        rendered.append(head + comma + (sep + comment if sep else ""))
    text = f"CREATE TABLE {name(table.name, True)} (\n" + "\n".join(rendered) + "\n);"
    rows = table.sample_rows
    if args.sample_rows > 0 and rows:
        header = " | ".join(c.name for c in table.columns)
        shown = "\n".join(" | ".join(sql_literal(v) for v in row) for row in rows[: args.sample_rows])
        text += (
            f"\n/* {min(len(rows), args.sample_rows)} example rows from {table.name}:\n{header}\n{shown}\n*/"
        )
    return text


def ddl_schema(schema: Schema, args: PromptArguments) -> str:
    return "\n\n".join(_ddl_table(t, schema, args) for t in schema.tables)


# ---- compact -----------------------------------------------------------------------------------------
def compact_schema(schema: Schema, args: PromptArguments) -> str:
    """One line per table: `name: col TYPE (PK), col (-> other.col) (e.g. 'x', 'y'), ...`."""

    def name(text: str, table: bool = False) -> str:
        return schema_name(text, args.dialect, table)

    lines = []
    for table in schema.tables:
        keys = {column for key in table.primary_keys for column in key}
        references = {}
        if args.include_foreign_keys:
            references = {
                fk.column: f"{name(fk.ref_table, True)}.{name(fk.ref_column)}"
                for fk in schema.foreign_keys
                if fk.table == table.name
            }
        columns = []
        for column in table.columns:
            text = name(column.name)
            if args.include_types and column.type:
                text += " " + column_type(column.type, args.dialect)
            if column.name in keys:
                text += " (PK)"
            if column.name in references:
                text += f" (-> {references[column.name]})"
            values = _values(column, args)
            if values:
                text += f" (e.g. {values})"
            columns.append(text)
        lines.append(f"{name(table.name, True)}: {', '.join(columns)}")
    return "\n".join(lines)


# ---- prompts -----------------------------------------------------------------------------------------
def schema_text(schema: Schema, args: PromptArguments) -> str:
    render = {"dbgpt": dbgpt_schema, "ddl": ddl_schema, "compact": compact_schema}[args.prompt_format]
    return render(schema, args)


def question_text(question: str, evidence: str = "") -> str:
    """The question, followed by BIRD's evidence when there is one."""
    return f"{question}\nEvidence: {evidence}" if evidence else question


def render_input(question: str, args: PromptArguments, evidence: str = "") -> str:
    template = DBGPT_INPUT if args.prompt_format == "dbgpt" else DDL_INPUT
    return template.format(question_text(question, evidence))


def build_prompt(example: Example, schema: Schema, args: PromptArguments) -> Prompt:
    if args.prompt_format == "dbgpt":
        template = DBGPT_ONE_SHOT_INSTRUCTION if args.one_shot else DBGPT_INSTRUCTION
        instruction = in_dialect(template, args.dialect).format(schema_text(schema, args))
    else:
        instruction = in_dialect(DDL_INSTRUCTION, args.dialect).format(
            (DDL_ONE_SHOT if args.one_shot else "") + schema_text(schema, args)
        )
    history = [(render_input(q, args), sql) for q, sql in example.history]
    return Prompt(instruction, render_input(example.question, args, example.evidence), history)


# ---- shortening --------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    words = set()
    for word in _WORD.findall(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text).lower()):
        words.add(word)
        if len(word) > 3 and word.endswith("s"):
            words.add(word[:-1])
    return words


def table_relevance(table: Table, question_words: set[str]) -> int:
    """How related a table is to the question: shared words with its name count 3, a column's 1."""
    score = 3 * len(_words(table.name + " " + table.natural_name) & question_words)
    for column in table.columns:
        if _words(column.name + " " + column.natural_name) & question_words:
            score += 1
        if any(_words(str(v)) & question_words for v in column.values if isinstance(v, str)):
            score += 1
    return score


def tables_in_sql(sql: str, schema: Schema) -> set[str]:
    """Names of the schema's tables that appear as words in `sql` (the tables a gold query uses)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql.lower()))
    for groups in re.findall(r'"([^"]+)"|`([^`]+)`|\[([^\]]+)\]', sql):
        words.update(name.lower() for name in groups if name)
    return {t.name for t in schema.tables if t.name.lower() in words}


def fit_prompt(
    example: Example,
    schema: Schema,
    args: PromptArguments,
    fits: Callable[[Prompt], bool],
    protected: set[str] | None = None,
) -> tuple[Prompt, Shortening]:
    """Build the prompt and shorten its schema until `fits(prompt)` holds.

    Order: drop sample values and rows, then drop tables from the least related to the question
    (`table_relevance`, ties broken by dropping later tables first), never those in `protected`.
    Returns the last prompt tried; `Shortening.fits` is False when even the smallest did not fit.
    """
    shortening = Shortening()
    prompt = build_prompt(example, schema, args)
    if fits(prompt):
        return prompt, shortening
    if args.sample_values or args.sample_rows:
        schema = schema.without_values()
        shortening.values_dropped = True
        prompt = build_prompt(example, schema, args)
        if fits(prompt):
            return prompt, shortening
    question_words = _words(" ".join([example.question, example.evidence, *(q for q, _ in example.history)]))
    keep_always = {name.lower() for name in protected or set()}
    order = sorted(
        (i for i, t in enumerate(schema.tables) if t.name.lower() not in keep_always),
        key=lambda i: (table_relevance(schema.tables[i], question_words), -i),
    )
    kept = {t.name for t in schema.tables}
    for index in order:
        kept.discard(schema.tables[index].name)
        shortening.tables_dropped += 1
        prompt = build_prompt(example, schema.subset(kept), args)
        if fits(prompt):
            return prompt, shortening
    shortening.fits = False
    return prompt, shortening


def schema_budget(args: PromptArguments) -> Callable[[Prompt], bool] | None:
    """The `max_schema_chars` option as a `fits` test (None when unset)."""
    if args.max_schema_chars is None:
        return None
    limit = args.max_schema_chars
    template = DBGPT_INSTRUCTION if args.prompt_format == "dbgpt" else DDL_INSTRUCTION
    base = len(in_dialect(template, args.dialect).format(""))
    return lambda prompt: len(prompt.instruction) - base <= limit
