"""`sqltune data`: read a benchmark or database, write prompt records, register the dataset.

sqltune data source=spider data_dir=../shared/data/spider split=train output_dir=data
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from sqltune.args import PromptArguments, SourceArguments
from sqltune.config import format_help, parse_args
from sqltune.data.dialect import DIALECT_NAMES, read_in_dialect
from sqltune.data.records import build_records, dataset_files, length_stats, write_dataset
from sqltune.errors import DataError, SqltuneWarning
from sqltune.files import check_output, check_output_dir, plain_name

GROUPS = (SourceArguments, PromptArguments)


def length_function(tokenizer_name: str | None) -> tuple[Callable[[str], int], str]:
    """Prompt length in tokens of the named tokenizer, or in characters when none is given."""
    if not tokenizer_name:
        return len, "characters"
    from transformers import AutoTokenizer

    from sqltune.models.embedded import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer_name))
    return (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])), "tokens"


def check_outputs(source: SourceArguments) -> str:
    """The dataset's name, once it is known that writing it destroys no input and stays in
    `output_dir` (checked before any reading, so a mistake costs no time)."""
    name = plain_name(source.dataset_name or f"{source.source}_{source.split}", "dataset_name")
    check_output_dir(source.output_dir)
    for path in dataset_files(source.output_dir, name):
        check_output(path, (source.questions, source.tables, source.db), "dataset file")
    return name


def warn_missing_databases(db_dir: str | None) -> None:
    """Records are built from the tables file alone, so a database folder that does not exist is
    not an error here, but everything that executes the dataset's SQL will need it."""
    if db_dir and not Path(db_dir).is_dir():
        warnings.warn(
            f"database folder {db_dir} does not exist; it is recorded as the dataset's db_dir, but "
            "executing its SQL (eval, execution-guided decoding) needs the databases there or db_dir=",
            SqltuneWarning,
            stacklevel=2,
        )


def run_data(source: SourceArguments, prompt: PromptArguments, quiet: bool = False) -> dict:
    """Build and register one dataset; return the summary (also printed, unless `quiet`: a dataset
    built on the way to another command)."""
    start = time.perf_counter()
    name = check_outputs(source)
    data, dialect = read_in_dialect(source, prompt.dialect)
    result = build_records(data, prompt, strict=source.strict)
    if not result.records:
        skipped = skip_counts(result.skipped)
        raise DataError(f"no records to write ({data.read} read, {skipped} skipped); nothing written")
    warn_missing_databases(data.db_dir)
    info = {
        "source": source.source,
        "split": source.split,
        "prompt": dataclasses.asdict(prompt),
        "tables": str(Path(data.tables_path).resolve()) if data.tables_path else None,
        "db_dir": str(Path(data.db_dir).resolve()) if data.db_dir else None,
    }
    if data.database:
        info["database"] = data.database
    if dialect:
        info["dialect"] = dialect.as_dict()
    path = write_dataset(source.output_dir, name, result, info)
    measure, unit = length_function(source.tokenizer)
    lengths = [
        measure(r["instruction"] + "".join(q + a for q, a in r["history"]) + r["input"])
        for r in result.records
    ]
    summary = {
        "dataset": name,
        "file": str(path),
        "read": data.read,
        "written": len(result.records),
        "skipped": dict(result.skipped),
        "shortened": result.shortened,
        "databases": len(result.schemas),
        "length_unit": unit,
        "prompt_length": length_stats(lengths),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if dialect:
        summary["dialect"] = dialect.as_dict()
    if not quiet:
        print_summary(summary)
    return summary


def skip_counts(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in skipped.items()) if skipped else "0"


def dialect_line(report: dict) -> str:
    """How the gold SQL came to be in the dialect, in one line of the summary."""
    name = DIALECT_NAMES[report["dialect"]]
    if "db_url" not in report:
        return f"{name}: {report['gold']}"
    return (
        f"{name}: {report['kept']} of {report['checked']} kept (same result as on SQLite), "
        f"{report['changed']} rewritten by transpiling"
    )


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sqltune data: {summary['dataset']}", show_header=False)
    table.add_row("records file", summary["file"])
    table.add_row("examples read", str(summary["read"]))
    table.add_row("records written", str(summary["written"]))
    table.add_row("skipped", skip_counts(summary["skipped"]))
    if "dialect" in summary:
        table.add_row("gold SQL", dialect_line(summary["dialect"]))
    table.add_row("schemas shortened", str(summary["shortened"]))
    table.add_row("databases", str(summary["databases"]))
    stats = summary["prompt_length"]
    table.add_row(
        f"prompt length ({summary['length_unit']})",
        f"min {stats['min']}  mean {stats['mean']}  median {stats['median']}  p90 {stats['p90']}  max {stats['max']}",
    )
    table.add_row("time", f"{summary['seconds']} s")
    Console(file=sys.stderr).print(table)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "synth":
        from sqltune.data.synth import main as synth_main

        return synth_main(argv[1:])
    if argv and argv[0] == "corpus":
        from sqltune.data.corpus import main as corpus_main

        return corpus_main(argv[1:])
    if argv and argv[0] == "pairs":
        from sqltune.data.pairs import main as pairs_main

        return pairs_main(argv[1:])
    if argv and argv[0] == "erd":
        from sqltune.data.erd import main as erd_main

        return erd_main(argv[1:])
    if argv and argv[0] == "agent":
        from sqltune.feedback.agent_traces import main as agent_main

        return agent_main(argv[1:])
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "data"))
        return 0
    source, prompt = parse_args(GROUPS, argv)
    run_data(source, prompt)
    return 0
