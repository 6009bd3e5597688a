"""The SQL agent's tools: look at a database and run queries on it, with text observations.

Three tools, each given to the model as a JSON schema (`TOOLS`) and run by `SqlTools.call`:

* `list_tables`: the table names;
* `describe_table(table)`: its columns with types, its primary key, its foreign keys and a few
  distinct values per column;
* `execute_sql(sql)`: the query's result, or its error.

Every query goes through `sqltune.db` (a SQLite file read-only with a deadline, or a server in a
read-only transaction with a server-side time limit), one statement, at most `max_rows` rows read, of
which `show_rows` are shown. Observations are short on purpose: a small model reads them in its
context window. A call the model got wrong (unknown tool, missing argument, unknown table) comes
back as an observation that says so, never as an exception, so that a conversation can go on. The
traces of `sqltune data agent` and the agent loop of `sqltune predict decoding=agent` / `ask --agent`
both use this class, so what the model sees in training is what it sees when it runs.
"""

from __future__ import annotations

from pathlib import Path

from sqltune.data.schema import Schema
from sqltune.db import QueryResult, open_database
from sqltune.models.tools import ToolCall

TOOLS: list[dict] = [
    {
        "name": "list_tables",
        "description": "List the tables of the database.",
        "parameters": {"type": "object", "properties": {}},
    },
    {
        "name": "describe_table",
        "description": "Show a table's columns with their types and keys, and a few values of each column.",
        "parameters": {
            "type": "object",
            "properties": {"table": {"type": "string", "description": "the table name"}},
            "required": ["table"],
        },
    },
    {
        "name": "execute_sql",
        "description": "Run one read-only SQL query and show its first rows, or its error.",
        "parameters": {
            "type": "object",
            "properties": {"sql": {"type": "string", "description": "one SELECT query"}},
            "required": ["sql"],
        },
    },
]
TOOL_NAMES = tuple(tool["name"] for tool in TOOLS)
VALUE_CHARS = 40  # a longer value is cut in an observation


def cell(value) -> str:
    text = "NULL" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


def result_text(result: QueryResult, show_rows: int) -> str:
    """A query's result as an observation: its error, or its row count, columns and first rows."""
    if result.error and result.error != "too many rows":
        return f"error: {result.error}"
    count = f"more than {len(result.rows)} rows" if result.error else f"{len(result.rows)} rows"
    if not result.rows:
        count = "0 rows"
    lines = [count, " | ".join(result.columns)]
    lines += [" | ".join(cell(v) for v in row) for row in result.rows[:show_rows]]
    if len(result.rows) > show_rows:
        lines.append("...")
    return "\n".join(lines)


class SqlTools:
    """The tools over one database (`target`: a SQLite file or a server URL; `schema`: its tables)."""

    def __init__(
        self,
        target: str | Path,
        schema: Schema,
        timeout: float = 5.0,
        max_rows: int = 100,
        show_rows: int = 5,
        values: int = 3,
    ) -> None:
        self.schema = schema
        self.timeout = timeout
        self.max_rows = max_rows
        self.show_rows = show_rows
        self.values = values
        self.database = open_database(target)
        self.last_result: QueryResult | None = None  # of the last execute_sql call

    def __enter__(self) -> SqlTools:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.database.close()

    def run(self, sql: str) -> QueryResult:
        return self.database.run(sql, timeout=self.timeout, max_rows=self.max_rows)

    def call(self, call: ToolCall) -> str:
        """The observation for one call (an error observation for a call that cannot be run)."""
        if call.name not in TOOL_NAMES:
            return f"error: unknown tool '{call.name}'; the tools are {', '.join(TOOL_NAMES)}"
        if call.name == "list_tables":
            return "\n".join(self.schema.table_names)
        argument = "table" if call.name == "describe_table" else "sql"
        value = call.arguments.get(argument)
        if not isinstance(value, str) or not value.strip():
            return f"error: {call.name} needs the argument '{argument}'"
        if call.name == "describe_table":
            return self.describe(value)
        self.last_result = self.run(value)
        return result_text(self.last_result, self.show_rows)

    def describe(self, name: str) -> str:
        table = self.schema.table(name)
        if table is None:
            return f"error: no table '{name}'; the tables are {', '.join(self.schema.table_names)}"
        keys = {column for key in table.primary_keys for column in key}
        lines = [f"table {table.name}"]
        for column in table.columns:
            note = " primary key" if column.name in keys else ""
            examples = self.column_values(table.name, column.name)
            shown = f" e.g. {', '.join(examples)}" if examples else ""
            kind = f" ({column.type})" if column.type else ""
            lines.append(f"- {column.name}{kind}{note}{shown}")
        for fk in self.schema.foreign_keys:
            if fk.table.lower() == table.name.lower():
                lines.append(f"- {fk.column} references {fk.ref_table}.{fk.ref_column}")
        return "\n".join(lines)

    def column_values(self, table: str, column: str) -> list[str]:
        """A few distinct non-null values of a column, read from the database itself."""
        if not self.values:
            return []
        import sqlglot.expressions as exp

        name = exp.column(column, quoted=True)
        query = (
            exp.select(name)
            .distinct()
            .from_(exp.table_(table, quoted=True))
            .where(name.is_(exp.null()).not_())
        )
        sql = query.limit(self.values).sql(dialect=self.database.dialect)
        result = self.database.run(sql, timeout=self.timeout, max_rows=self.values)
        return [cell(row[0]) for row in result.rows] if result.ok else []
