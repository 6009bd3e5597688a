"""Benchmark: `sqltune eval` on a database server against SQLite, on the same Spider dev predictions.

    python bench/server_eval.py [--spider-dir ../shared/data/spider] [--pred PRED --gold GOLD]
        [--url postgresql://user@host:5432/ | --server mariadb] [--workers N] [--output results.json]

Without --url a throwaway server is started (`--server postgres` or `mariadb`: the tests' own,
`tests/servers.py`, in a temporary folder on a free loopback port) and stopped at the end. The databases the gold
file names are loaded into the server with `sqltune.db.load.load_databases` (timed), then the
predictions are scored by `evaluate()` with the same settings (EX, plus hardness from the SQLite
files) on the SQLite files and on the server (`db_url`), `--repeat` times each (the best time is
kept; in-process, imports excluded). Printed and saved: the two times, EX on each, and the verdicts compared example by example: how many were scored on both
(on the server, an example whose gold query fails there is not scored), how many agree, and each
disagreement with its cause, found by running the gold and predicted queries again on both sides.

The predictions default to those of the Spider run at /work/runs/spider/full (972 dev questions,
the fine-tuned model's greedy answers) with its gold file; `--pred gold` scores the gold queries
themselves (a check that the two sides agree where nothing differs but the database).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from sqltune.db import execute  # noqa: E402
from sqltune.db.load import database_template, load_databases  # noqa: E402
from sqltune.db.urls import for_database, hide_password  # noqa: E402
from sqltune.evaluate import evaluate  # noqa: E402
from sqltune.evaluate.execution import close_operators, remove_distinct, replace_current_year  # noqa: E402
from sqltune.evaluate.inputs import read_gold  # noqa: E402

RUN = Path("/work/runs/spider/full")


def comparable(rows: list[tuple]) -> list[tuple]:
    """Rows with numbers in one form (a server's Decimal and SQLite's float alike), for comparing
    the two databases' results with each other, which scoring itself never does."""

    def value(v):
        if isinstance(v, (Decimal, float)) and not isinstance(v, bool):
            return round(float(v), 6)
        return v

    return [tuple(value(v) for v in row) for row in rows]


def rerun(target, sql: str, timeout: float) -> tuple[list[tuple] | None, str | None]:
    """The rows of `sql` as the evaluator runs it (operators closed, DISTINCT dropped), or its error."""
    prepared = replace_current_year(remove_distinct(close_operators(sql)))
    result = execute(target, prepared, timeout=timeout, max_rows=100_000)
    return (comparable(result.rows), None) if result.ok else (None, result.error)


def error_kind(error: str) -> str:
    """The error's class, with MySQL's error number (PyMySQL raises one class for most errors)."""
    kind, _, message = error.partition(": ")
    number = re.match(r"\((\d+),", message)
    return f"{kind} {number.group(1)}" if number else kind


def gold_failure(error: str) -> str:
    """The server's error kind in a row's "gold query failed on URL: Kind: message"."""
    failure = error[error.index("gold query failed on ") :]
    return error_kind(failure.split(": ", 1)[1])


def cause(gold: str, pred: str, sqlite_db: Path, server_db: str, timeout: float) -> str:
    """Why one example's verdicts differ between SQLite and the server."""
    gold_lite, _ = rerun(sqlite_db, gold, timeout)
    gold_server, _ = rerun(server_db, gold, timeout)
    pred_lite, lite_error = rerun(sqlite_db, pred, timeout)
    pred_server, server_error = rerun(server_db, pred, timeout)
    if server_error and not lite_error:
        return f"prediction fails on the server ({error_kind(server_error)})"
    if lite_error and not server_error:
        return f"prediction fails on SQLite ({error_kind(lite_error)})"
    queries = (("gold", gold, gold_lite, gold_server), ("prediction", pred, pred_lite, pred_server))
    for name, sql, lite, server in queries:
        if lite is not None and server is not None and lite != server:
            if sorted(lite, key=repr) == sorted(server, key=repr):
                return f"{name}: the same rows in another order (order left to the database, or ties)"
            if "limit" in sql.lower() and len(lite) == len(server):
                return f"{name}: another row kept by LIMIT (ties in the order)"
            return f"{name}: different rows"
    return "same rows on both, scored differently (value types in the comparison)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider-dir", type=Path, default=ROOT.parent / "shared" / "data" / "spider")
    parser.add_argument("--pred", default=str(RUN / "predictions" / "after.jsonl"), help="or 'gold'")
    parser.add_argument("--gold", type=Path, default=RUN / "data" / "spider_dev_gold.sql")
    parser.add_argument("--url", default=None, help="server URL (default: a throwaway --server)")
    parser.add_argument("--server", choices=("postgres", "mariadb"), default="postgres")
    parser.add_argument("--workers", type=int, default=0, help="0 = one per CPU")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per query, both sides")
    parser.add_argument("--repeat", type=int, default=3, help="eval runs per database; the best is kept")
    parser.add_argument("--output", type=Path, default=None, help="write the results (JSON) here")
    args = parser.parse_args()
    database = args.spider_dir / "database"
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        pred = Path(args.pred)
        if args.pred == "gold":
            pred = Path(tmp) / "gold_as_pred.txt"
            pred.write_text("".join(item.sql + "\n" for item in read_gold(args.gold)))
        if args.url:
            url = args.url
        else:
            from tests.servers import mariadb_server, postgres_server

            url = stack.enter_context(postgres_server() if args.server == "postgres" else mariadb_server())
        template = database_template(url)
        db_ids = sorted({item.db_id for item in read_gold(args.gold)})
        began = time.perf_counter()
        loads = load_databases(database, template, db_ids)
        load_seconds = time.perf_counter() - began
        changes = sum(len(report.changes) for report in loads)
        print(
            f"loaded {len(loads)} databases ({sum(r.rows for r in loads)} rows, {changes} reported changes) "
            f"into {hide_password(template)} in {load_seconds:.1f} s",
            flush=True,
        )
        options = {"etype": "exec", "workers": args.workers, "timeout": args.timeout}
        runs, seconds = {}, {}
        for name, where in (("sqlite", {}), ("server", {"db_url": template})):
            times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                runs[name] = evaluate(pred, args.gold, database, **where, **options)
                times.append(time.perf_counter() - began)
            seconds[name] = min(times)
            print(
                f"{name}: {seconds[name]:.1f} s, {runs[name]['summary']['levels']['all']['exec']}", flush=True
            )
        results = compare(runs, database, template, args.timeout)
    results.update(
        predictions=str(args.pred),
        gold=str(args.gold),
        server=hide_password(template),
        workers=runs["sqlite"]["settings"]["workers"],
        timeout=args.timeout,
        load_seconds=round(load_seconds, 2),
        eval_seconds={name: round(value, 2) for name, value in seconds.items()},
    )
    show(results)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.output}")


def compare(runs: dict, database: Path, template: str, timeout: float) -> dict:
    """The agreement of the two runs' verdicts, example by example, with a cause per disagreement."""
    lite_rows, server_rows = runs["sqlite"]["examples"], runs["server"]["examples"]
    gold_failed = Counter()
    gold_failed_by_hardness = Counter()
    disagreements, causes, gold_failures = [], Counter(), []
    both = agree = 0
    for lite, server in zip(lite_rows, server_rows, strict=True):
        if server["exec"] is None:
            gold_failed[gold_failure(server["error"])] += 1
            gold_failed_by_hardness[lite["hardness"]] += 1
            gold_failures.append({"index": lite["index"], "gold": lite["gold"], "error": server["error"]})
            continue
        both += 1
        if lite["exec"] == server["exec"]:
            agree += 1
            continue
        db_id = lite["db_id"]
        why = cause(
            lite["gold"],
            lite["pred"],
            database / db_id / f"{db_id}.sqlite",
            for_database(template, db_id),
            timeout,
        )
        causes[why] += 1
        disagreements.append(
            {
                "index": lite["index"],
                "db_id": db_id,
                "sqlite": lite["exec"],
                "server": server["exec"],
                "cause": why,
                "gold": lite["gold"],
                "pred": lite["pred"],
                "server_error": server["error"],
            }
        )
    levels = {name: run["summary"]["levels"]["all"]["exec"] for name, run in runs.items()}
    return {
        "examples": len(lite_rows),
        "ex": levels,
        "scored_on_both": both,
        "agree": agree,
        "disagree": both - agree,
        "sqlite_1_server_0": sum(d["sqlite"] == 1 for d in disagreements),
        "sqlite_0_server_1": sum(d["server"] == 1 for d in disagreements),
        "disagreement_causes": dict(causes.most_common()),
        "gold_failed_on_server": sum(gold_failed.values()),
        "gold_failed_by_error": dict(gold_failed.most_common()),
        "gold_failed_by_hardness": dict(gold_failed_by_hardness),
        "disagreements": disagreements,
        "gold_failures": gold_failures,
    }


def show(results: dict) -> None:
    ex = results["ex"]
    print(f"\n{results['examples']} examples, workers={results['workers']}, timeout {results['timeout']} s")
    print(f"load into the server: {results['load_seconds']} s")
    for name in ("sqlite", "server"):
        rate = ex[name]
        print(
            f"eval on {name:6}: {results['eval_seconds'][name]:6.1f} s  "
            f"EX {rate['correct']}/{rate['count']} = {rate['rate']:.3f}"
        )
    print(
        f"gold failed on the server (not scored): {results['gold_failed_on_server']} "
        f"{results['gold_failed_by_error']} by hardness {results['gold_failed_by_hardness']}"
    )
    print(
        f"scored on both: {results['scored_on_both']}, agree {results['agree']}, disagree "
        f"{results['disagree']} (SQLite 1 / server 0: {results['sqlite_1_server_0']}, "
        f"SQLite 0 / server 1: {results['sqlite_0_server_1']})"
    )
    for why, count in results["disagreement_causes"].items():
        print(f"  {count:4}  {why}")


if __name__ == "__main__":
    main()
