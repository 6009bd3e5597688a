"""`sqltune db`: database servers. `sqltune db load` copies SQLite databases into one.

    sqltune db load db_dir=../shared/data/spider/database url=postgresql://postgres@127.0.0.1:5432/{db_id}
    sqltune db load source=demo url=mysql://root@127.0.0.1:3306/{db_id} db_ids=bookstore,music

The rules of the copy (names, types, keys, reruns) are in `sqltune.db.load`; this module reads the
arguments and prints the report: a line per database, a line per change, what was noticed about
the server. URLs are shown with the password hidden.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter

from sqltune.args import DbLoadArguments
from sqltune.config import format_help, parse_args
from sqltune.db.load import LoadReport, database_template, load_databases
from sqltune.db.urls import hide_password
from sqltune.errors import ConfigError

USAGE = """usage: sqltune db <subcommand> [CONFIG.yaml] [key=value ...]

subcommands:
  load  copy SQLite databases (<db_dir>/<db_id>/<db_id>.sqlite, or source=demo) into a PostgreSQL or
        MySQL/MariaDB server, one database per db_id

`sqltune db load --help` lists its options."""


def run_load(args: DbLoadArguments) -> list[LoadReport]:
    """Load the databases the arguments name (the demo's are written to a temporary folder first)."""
    if args.source == "demo":
        from sqltune.data.demo import build_demo_databases

        with tempfile.TemporaryDirectory(prefix="sqltune-demo-") as folder:
            build_demo_databases(folder)
            return load_databases(folder, args.url, args.db_ids, progress=True)
    return load_databases(args.db_dir, args.url, args.db_ids, progress=True)


def print_reports(reports: list[LoadReport], url: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stderr)
    title = f"sqltune db load: {len(reports)} database(s) into {hide_password(database_template(url))}"
    table = Table(title=title)
    for name, justify in (("database", "left"), ("tables", "right"), ("rows", "right"), ("changes", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("row counts")
    table.add_column("seconds", justify="right")
    for r in reports:
        verified = "equal SQLite's" if r.verified else "DIFFER from SQLite's"
        name = f"{r.db_id} (created)" if r.created else r.db_id
        table.add_row(name, str(len(r.tables)), str(r.rows), str(len(r.changes)), verified, str(r.seconds))
    console.print(table)
    changes = [(r.db_id, c) for r in reports for c in r.changes]
    if changes:
        listing = Table(title="changes (see sqltune.db.load for the rules)")
        for name in ("database", "kind", "where", "what"):
            listing.add_column(name)
        for db_id, change in changes:
            listing.add_row(db_id, change.kind, change.where, change.detail)
        console.print(listing)
    for note in dict.fromkeys(note for r in reports for note in r.notes):
        console.print(f"note: {note}")
    kinds = Counter(change.kind for _, change in changes)
    counted = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()) or "none"
    total_tables = sum(len(r.tables) for r in reports)
    total_rows = sum(r.rows for r in reports)
    console.print(f"{len(reports)} database(s), {total_tables} tables, {total_rows} rows; changes: {counted}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command != "load":
        raise ConfigError(f"unknown subcommand 'db {command}': the one subcommand is 'db load'")
    if any(a in ("-h", "--help") for a in rest):
        print(format_help((DbLoadArguments,), "db load"))
        return 0
    (args,) = parse_args((DbLoadArguments,), rest)
    reports = run_load(args)
    print_reports(reports, args.url)
    return 0 if all(r.verified for r in reports) else 1
