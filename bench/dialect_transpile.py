"""Benchmark: Spider dev gold SQL in PostgreSQL and MySQL (MariaDB), transpiled and checked by execution.

    python bench/dialect_transpile.py --spider-dir ../shared/data/spider [--dialects postgres,mysql]
        [--json results.json]

Starts a throwaway PostgreSQL and MariaDB (tests/servers.py), loads the Spider dev databases into
both with `sqltune db load`, and runs every dev gold query through `sqltune.data.dialect`: transpiled
(the plain version, then the careful one) and kept when the server returns what SQLite returns.
Printed: the share kept per hardness (hardness from `sqltune.evaluate.spider`), next to plain
`sqlglot.transpile` with none of sqltune's adjustments (no name rules, no second version), and the
reasons the rest were dropped, with a count and an example each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.servers import mariadb_server, postgres_server  # noqa: E402

from sqltune.args import SourceArguments  # noqa: E402
from sqltune.data.dialect import (  # noqa: E402
    DIALECT_NAMES,
    DialectCheck,
    difference,
    error_class,
)
from sqltune.data.sources import read_source  # noqa: E402
from sqltune.db import open_database  # noqa: E402
from sqltune.db.load import load_databases  # noqa: E402
from sqltune.evaluate.execution import order_matters  # noqa: E402
from sqltune.evaluate.spider.hardness import hardness  # noqa: E402
from sqltune.evaluate.spider.parse import SpiderSchema, parse_sql  # noqa: E402

LEVELS = ("easy", "medium", "hard", "extra", "all")
SERVERS = {"postgres": postgres_server, "mysql": mariadb_server}


def sqlglot_alone(sql: str, dialect: str, sqlite, server) -> str | None:
    """The reason plain `sqlglot.transpile` fails on the server, or None when it matches SQLite."""
    import sqlglot

    try:
        version = sqlglot.transpile(sql, read="sqlite", write=dialect)[0]
    except sqlglot.errors.SqlglotError:
        return "transpile error"
    gold, result = sqlite.run(sql, 30), server.run(version, 30)
    if not result.ok:
        return "timeout" if result.error == "timeout" else f"server error ({error_class(result.error)})"
    return None if difference(gold.rows, result.rows, order_matters(sql)) is None else "different result"


def run_dialect(dialect: str, url: str, data, levels: dict[str, str]) -> dict:
    """Check every example in `dialect`; return counts per hardness and the reasons with examples."""
    kept: Counter = Counter()
    alone: Counter = Counter()
    alone_reasons: Counter = Counter()
    reasons: Counter = Counter()
    examples: dict[str, dict] = {}
    careful = changed = 0
    start = time.perf_counter()
    opened: dict[str, tuple] = {}  # db_id -> (SQLite file, server database) for sqlglot alone
    with DialectCheck(dialect, url + "{db_id}") as check:
        for example in data.examples:
            schema = data.schemas[example.db_id]
            outcome = check.check(schema, example.sql)
            level = levels[example.id]
            if outcome.sql is not None:
                kept[level] += 1
                careful += outcome.careful
                changed += outcome.changed
            else:
                reason = outcome.reason
                if reason == "different result":  # detail: "row count|row order|values: <SQL>"
                    reason += f" ({outcome.detail.split(':')[0]})"
                reasons[reason] += 1
                examples.setdefault(
                    reason, {"sql": example.sql, "db_id": example.db_id, "why": outcome.detail}
                )
            if example.db_id not in opened:
                opened[example.db_id] = (open_database(schema.db_path), open_database(url + example.db_id))
            why = sqlglot_alone(example.sql, dialect, *opened[example.db_id])
            if why is None:
                alone[level] += 1
            else:
                alone_reasons[why] += 1
    for databases in opened.values():
        for database in databases:
            database.close()
    for counter in (kept, alone):
        counter["all"] = sum(counter[level] for level in LEVELS[:-1])
    return {
        "kept": dict(kept),
        "sqlglot_alone": dict(alone),
        "careful": careful,
        "changed": changed,
        "reasons": dict(reasons.most_common()),
        "sqlglot_alone_reasons": dict(alone_reasons.most_common()),
        "examples": examples,
        "seconds": round(time.perf_counter() - start, 1),
    }


def print_results(results: dict, totals: Counter) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    table = Table(title="Spider dev gold SQL kept (same result on the server as on SQLite)")
    table.add_column("hardness")
    table.add_column("n", justify="right")
    for dialect in results:
        table.add_column(f"{DIALECT_NAMES[dialect]} sqltune", justify="right")
        table.add_column(f"{DIALECT_NAMES[dialect]} sqlglot alone", justify="right")
    for level in LEVELS:
        row = [level, str(totals[level])]
        for result in results.values():
            for key in ("kept", "sqlglot_alone"):
                got = result[key].get(level, 0)
                row.append(f"{got} ({got / max(totals[level], 1):.1%})")
        table.add_row(*row)
    console.print(table)
    for dialect, result in results.items():
        reasons = Table(title=f"{DIALECT_NAMES[dialect]}: why the rest were dropped ({result['seconds']} s)")
        for name in ("reason", "count", "example (db_id: SQLite gold SQL -> what happened)"):
            reasons.add_column(name)
        for reason, count in result["reasons"].items():
            example = result["examples"][reason]
            reasons.add_row(
                reason, str(count), f"{example['db_id']}: {example['sql']} -> {example['why'][:160]}"
            )
        console.print(reasons)
        console.print(
            f"{DIALECT_NAMES[dialect]}: {result['changed']} kept queries rewritten by transpiling, "
            f"{result['careful']} needed the careful version"
        )
        failures = ", ".join(f"{n} {why}" for why, n in result["sqlglot_alone_reasons"].items())
        console.print(f"{DIALECT_NAMES[dialect]}, sqlglot alone fails: {failures}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider-dir", type=Path, default=ROOT.parent / "shared" / "data" / "spider")
    parser.add_argument("--dialects", default="postgres,mysql")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    data = read_source(SourceArguments(source="spider", data_dir=str(args.spider_dir), split="dev"))
    usable = [e for e in data.examples if data.schemas[e.db_id].db_path]
    data.examples = usable
    levels, spider_schemas = {}, {}
    for example in usable:
        path = data.schemas[example.db_id].db_path
        spider_schemas.setdefault(path, SpiderSchema.from_sqlite(path))
        levels[example.id] = hardness(parse_sql(example.sql, spider_schemas[path]))
    totals = Counter(levels.values())
    totals["all"] = len(usable)
    db_ids = sorted({e.db_id for e in usable})
    print(f"Spider dev: {len(usable)} of {data.read} questions have their database ({len(db_ids)} databases)")
    results = {}
    for dialect in args.dialects.split(","):
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(SERVERS[dialect]())
            start = time.perf_counter()
            load_databases(args.spider_dir / "database", url + "{db_id}", db_ids)
            print(
                f"{DIALECT_NAMES[dialect]}: {len(db_ids)} databases loaded in {time.perf_counter() - start:.1f} s"
            )
            results[dialect] = run_dialect(dialect, url, data, levels)
    print_results(results, totals)
    if args.json:
        args.json.write_text(json.dumps({"totals": dict(totals), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
