"""`sqltune data synth`: question/SQL pairs for any SQLite database, without a model or an API.

    sqltune data synth db=shop.sqlite output=data/shop_pairs.jsonl per_db=200 seed=42
    sqltune data synth db=postgresql://reader:pw@127.0.0.1/shop output=data/shop_pairs.jsonl

The synthesizer profiles the database (`synth_profile`: what each table and column is, in words,
and which values it holds), then draws from question templates (`synth_templates`: projections,
filters, counts, aggregates, GROUP BY and HAVING, ORDER BY and LIMIT, joins along foreign keys,
nested queries) with real values from the data. Every SQL is executed read-only and kept only
when it runs and returns a non-empty, non-zero answer; duplicates (same SQL or same question) are
dropped. The same database and seed always give the same pairs. On a server (a PostgreSQL or
MySQL URL) the templates' SQL is written in the server's dialect (sqlglot) and checked there,
through `sqltune.db`'s read-only transaction. The output feeds
`sqltune data source=sqlite questions=...` (one database) or `source=jsonl` (a folder).
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqltune.args import SynthArguments
from sqltune.config import format_help, parse_args
from sqltune.data.introspect import schema_from_sqlite, schema_from_url
from sqltune.data.synth_joins import join_columns, join_filter, join_group, nested
from sqltune.data.synth_profile import DatabaseProfile, in_dialect, profile_database
from sqltune.data.synth_templates import (
    Pair,
    above_average,
    aggregate,
    count_all,
    count_where,
    distinct_values,
    filter_rows,
    group_by,
    group_having,
    list_columns,
    most_common,
    order_by,
    superlative,
    two_conditions,
)
from sqltune.db import is_url, open_database
from sqltune.db.sqlite import folder_databases
from sqltune.errors import ConfigError, DataError
from sqltune.files import check_output, write_jsonl

QUERY_TIMEOUT = 5.0  # seconds per check query
MAX_ROWS = 1000  # rows fetched per check query; more is fine, the query still returned rows
ATTEMPTS_PER_PAIR = 40  # templates tried per requested pair before giving up on a small database

Template = Callable[[random.Random, DatabaseProfile], Pair | None]
# template -> relative weight: simple shapes come more often, as they do in real workloads
TEMPLATES: list[tuple[Template, float]] = [
    (count_all, 1.0),
    (list_columns, 2.0),
    (distinct_values, 1.0),
    (filter_rows, 4.0),
    (count_where, 2.5),
    (two_conditions, 1.0),
    (aggregate, 2.5),
    (group_by, 2.0),
    (group_having, 0.8),
    (most_common, 1.0),
    (superlative, 2.5),
    (order_by, 1.2),
    (above_average, 0.8),
    (join_columns, 1.2),
    (join_filter, 2.0),
    (join_group, 1.8),
    (nested, 1.0),
]


def find_databases(path: str | Path) -> list[tuple[str, Path | str]]:
    """(db_id, file) for a SQLite file, or for every database in a folder, either Spider's layout
    `<db>/<db>.sqlite` or files directly inside it; (db_id, URL) for a server database."""
    if is_url(str(path)):
        import sqlalchemy as sa

        return [(sa.engine.make_url(str(path)).database or "database", str(path))]
    path = Path(path)
    if path.is_file():
        return [(path.stem, path)]
    if not path.is_dir():
        raise DataError(f"database not found: {path}")
    found = folder_databases(path)
    if not found:
        raise DataError(f"{path}: no SQLite databases (<db>/<db>.sqlite or *.sqlite)")
    return found


def answers(database, sql: str) -> bool:
    """Whether `sql` runs and returns at least one value that is not NULL, zero or empty."""
    result = database.run(sql, timeout=QUERY_TIMEOUT, max_rows=MAX_ROWS)
    if result.error not in (None, "too many rows"):
        return False
    return any(value not in (None, 0, "") for row in result.rows for value in row)


def synthesize(target: str | Path, count: int, seed: int = 42, db_id: str | None = None) -> list[dict]:
    """Up to `count` checked question/SQL pairs for one database, a SQLite file or a server URL
    (fewer when it is small)."""
    on_server = is_url(str(target))
    schema = schema_from_url(str(target), db_id, values=0) if on_server else schema_from_sqlite(target, db_id)
    database = open_database(target)
    try:
        try:
            profile = profile_database(schema, database)
        except DataError as err:  # e.g. a corrupt file whose schema still reads
            raise DataError(f"{database_name(target)}: {err}") from None
        if not profile.tables:
            return []
        rng = random.Random(f"{seed}:{schema.db_id}")
        templates, weights = zip(*TEMPLATES)
        pairs: list[dict] = []
        tried: set[str] = set()
        questions: set[str] = set()
        for _ in range(count * ATTEMPTS_PER_PAIR):
            if len(pairs) >= count:
                break
            pair = rng.choices(templates, weights)[0](rng, profile)
            if pair is None or pair.sql in tried or pair.question.lower() in questions:
                continue
            tried.add(pair.sql)
            sql = in_dialect(pair.sql, database.dialect)
            if not answers(database, sql):
                continue
            questions.add(pair.question.lower())
            pairs.append(
                {
                    "db_id": schema.db_id,
                    "question": pair.question,
                    "sql": sql,
                    "kind": pair.kind,
                    "difficulty": pair.difficulty,
                }
            )
    finally:
        database.close()
    return pairs


def database_name(target: str | Path) -> str:
    """How a database is named in messages: its path, or its URL without the password."""
    from sqltune.db.urls import hide_password

    return hide_password(str(target))


def run_synth(args: SynthArguments) -> dict:
    if not args.db:
        raise ConfigError("synth needs db=<SQLite file, folder of databases, or server URL>")
    if args.per_db < 1:
        raise ConfigError("per_db: must be >= 1")
    check_output(args.output, () if is_url(args.db) else (args.db,), "output")
    start = time.perf_counter()
    databases = find_databases(args.db)
    from tqdm import tqdm

    pairs: list[dict] = []
    per_db: dict[str, int] = {}
    for db_id, path in tqdm(databases, desc="synth", unit="db", disable=len(databases) < 2):
        found = synthesize(path, args.per_db, args.seed, db_id)
        per_db[db_id] = len(found)
        pairs += found
    if not pairs:  # never replace a pairs file with an empty one
        raise DataError(
            f"{database_name(args.db)}: no question/SQL pairs could be synthesized (no rows?); nothing written"
        )
    write_jsonl(args.output, pairs)
    summary = {
        "output": str(args.output),
        "databases": len(databases),
        "pairs": len(pairs),
        "short": {db: n for db, n in per_db.items() if n < args.per_db},
        "kinds": dict(Counter(p["kind"] for p in pairs).most_common()),
        "seconds": round(time.perf_counter() - start, 2),
    }
    print_summary(summary, args.per_db)
    return summary


def print_summary(summary: dict, per_db: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sqltune data synth", show_header=False)
    table.add_row("pairs file", summary["output"])
    table.add_row("databases", str(summary["databases"]))
    table.add_row("pairs written", str(summary["pairs"]))
    short = summary["short"]
    table.add_row(
        f"databases under {per_db}",
        ", ".join(f"{db} ({n})" for db, n in short.items()) if short else "none",
    )
    table.add_row("kinds", ", ".join(f"{kind} {n}" for kind, n in summary["kinds"].items()))
    table.add_row("time", f"{summary['seconds']} s")
    Console(file=sys.stderr).print(table)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help((SynthArguments,), "data synth"))
        return 0
    (args,) = parse_args((SynthArguments,), argv)
    run_synth(args)
    return 0
