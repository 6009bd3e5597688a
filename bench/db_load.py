"""Benchmark: every Spider database into PostgreSQL and MariaDB with `sqltune db load`, timed.

    python bench/db_load.py [--spider-dir ../shared/data/spider] [--servers postgres,mariadb]
        [--json db_load.json]

Starts a throwaway PostgreSQL and MariaDB (tests/servers.py: Debian's binaries, a temporary folder
under /tmp, a free loopback port), loads every `<spider>/database/<db_id>/<db_id>.sqlite` into each
with `sqltune.db.load.load_databases` (one server database per db_id), and prints per server: the
seconds, databases, tables, rows, how many databases' row counts were verified, and the changes the
loader reported, counted by kind. `--json` also saves every report (each change, one per line).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.servers import mariadb_server, postgres_server  # noqa: E402

from sqltune.db.load import load_databases  # noqa: E402
from sqltune.db.load_plan import (  # noqa: E402
    AS_NUMBER,
    AS_TEXT,
    FK_SKIPPED,
    KEY_DROPPED,
    TYPE_UNKNOWN,
    VALUE_CHANGED,
    WIDENED,
)

SERVERS = {"postgres": postgres_server, "mariadb": mariadb_server}
KINDS = (TYPE_UNKNOWN, AS_TEXT, AS_NUMBER, WIDENED, KEY_DROPPED, FK_SKIPPED, VALUE_CHANGED)


def load_all(server: str, db_dir: Path) -> dict:
    with SERVERS[server]() as url:
        began = time.perf_counter()
        reports = load_databases(db_dir, url + "{db_id}", progress=True)
        seconds = time.perf_counter() - began
    kinds = Counter(change.kind for report in reports for change in report.changes)
    return {
        "server": server,
        "seconds": round(seconds, 1),
        "databases": len(reports),
        "tables": sum(len(r.tables) for r in reports),
        "rows": sum(r.rows for r in reports),
        "verified": sum(r.verified for r in reports),
        "changes": {kind: kinds.get(kind, 0) for kind in KINDS},
        "notes": sorted({note for r in reports for note in r.notes}),
        "reports": [r.to_dict() for r in reports],
    }


def print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sqltune db load: every Spider database")
    table.add_column("")
    for result in results:
        table.add_column(result["server"], justify="right")
    for key in ("seconds", "databases", "tables", "rows", "verified"):
        table.add_row(key, *(str(r[key]) for r in results))
    for kind in KINDS:
        table.add_row(kind, *(str(r["changes"][kind]) for r in results))
    Console().print(table)
    for result in results:
        for note in result["notes"]:
            print(f"{result['server']}: note: {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider-dir", default=str(ROOT.parent / "shared" / "data" / "spider"))
    parser.add_argument("--servers", default="postgres,mariadb")
    parser.add_argument("--json", help="save the results and every report here")
    args = parser.parse_args()
    db_dir = Path(args.spider_dir) / "database"
    results = [load_all(server, db_dir) for server in args.servers.split(",")]
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
