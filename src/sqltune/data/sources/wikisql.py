"""WikiSQL: `<split>.jsonl` questions over single tables in `<split>.tables.jsonl`.

WikiSQL gives its SQL as a structure, `{"sel": column index, "agg": operator index, "conds":
[[column index, operator index, value], ...]}`; `render_sql` writes it as SQL text over the table's
header (the column names people read), quoting names and values as SQLite needs. Each table is its
own database: the db_id is the table id and the table is named `table_<id>` as in WikiSQL's own
SQLite files. Sample values and rows come from the rows stored in the tables file, so the prompt
options that show them work without a database file.
"""

from __future__ import annotations

from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.example import Example
from sqltune.data.prompts import quote_identifier
from sqltune.data.schema import Column, Schema, Table
from sqltune.data.sources import Skips, SourceData, require_dir
from sqltune.errors import ConfigError, DataError
from sqltune.files import read_jsonl

AGGREGATES = ["", "max", "min", "count", "sum", "avg"]
OPERATORS = ["=", ">", "<"]
SAMPLES = 3  # distinct values per column and rows per table kept for prompts


def table_name(table_id: str) -> str:
    return "table_" + table_id.replace("-", "_")


def load_tables(path: Path) -> dict[str, Schema]:
    schemas = {}
    for lineno, row in enumerate(read_jsonl(path, "WikiSQL tables file"), start=1):
        try:
            table_id, header = row["id"], row["header"]
        except KeyError as err:
            raise DataError(f"{path}: table on line {lineno} lacks field {err}") from None
        types = row.get("types") or ["text"] * len(header)
        rows = row.get("rows") or []
        columns = [
            Column(
                name=name,
                type=ctype,
                natural_name=name.lower(),
                values=list(dict.fromkeys(r[i] for r in rows if i < len(r) and r[i] not in (None, "")))[
                    :SAMPLES
                ],
            )
            for i, (name, ctype) in enumerate(zip(header, types))
        ]
        table = Table(table_name(table_id), columns, natural_name=row.get("page_title") or "")
        table.sample_rows = [list(r) for r in rows[:SAMPLES]]
        schemas[table_id] = Schema(db_id=table_id, tables=[table])
    return schemas


def _literal(value: object, numeric: bool) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) and not value.is_integer() else str(int(value))
    text = str(value)
    if numeric:
        try:
            float(text)
            return text
        except ValueError:
            pass
    return "'" + text.replace("'", "''") + "'"


def render_sql(sql: dict, schema: Schema) -> str:
    """WikiSQL's {sel, agg, conds} as SQL text, e.g. SELECT count("Player") FROM t WHERE "No." = 5."""
    table = schema.tables[0]
    columns = table.columns
    try:
        selected = quote_identifier(columns[sql["sel"]].name)
        aggregate = AGGREGATES[sql["agg"]]
        text = f"SELECT {aggregate}({selected})" if aggregate else f"SELECT {selected}"
        text += f" FROM {table.name}"
        conditions = []
        for column_index, operator, value in sql.get("conds", []):
            column = columns[column_index]
            numeric = column.type.lower() in ("real", "number")
            literal = _literal(value, numeric)
            conditions.append(f"{quote_identifier(column.name)} {OPERATORS[operator]} {literal}")
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise ValueError(f"malformed WikiSQL sql structure {sql!r} ({err})") from None
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    return text


def read_wikisql(args: SourceArguments) -> SourceData:
    data_dir = Path(require_dir(args))
    if args.split not in ("train", "dev", "test"):
        raise ConfigError(f"split: unknown '{args.split}' for wikisql, choose one of train, dev, test")
    questions = data_dir / f"{args.split}.jsonl"
    tables_path = Path(args.tables) if args.tables else data_dir / f"{args.split}.tables.jsonl"
    schemas = load_tables(tables_path)
    skips = Skips(args.strict)
    examples: list[Example] = []
    read = 0
    for lineno, record in enumerate(read_jsonl(questions, "WikiSQL question file"), start=1):
        if args.limit is not None and read >= args.limit:
            break
        read += 1
        where = f"{questions}: line {lineno}"
        table_id = record.get("table_id")
        if not table_id:
            skips.add("missing table_id", where)
            continue
        if table_id not in schemas:
            raise DataError(f"{where}: unknown table_id '{table_id}' (not in {tables_path})")
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            skips.add("missing question", where)
            continue
        if not isinstance(record.get("sql"), dict):
            skips.add("missing SQL", where)
            continue
        try:
            sql = render_sql(record["sql"], schemas[table_id])
        except ValueError as err:
            skips.add("malformed SQL structure", f"{where}: {err}")
            continue
        examples.append(
            Example(
                id=f"{args.split}_{lineno - 1}", db_id=table_id, question=question, sql=sql, source="wikisql"
            )
        )
    return SourceData(examples, schemas, skips.counts, read, str(tables_path), None)
