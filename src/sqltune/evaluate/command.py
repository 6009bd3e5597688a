"""`sqltune eval`: score a prediction file against gold SQL and print the familiar table.

sqltune eval --pred pred.sql --gold dev_gold.sql --db-dir database --tables tables.json
"""

from __future__ import annotations

import dataclasses

from sqltune.args import EvalArguments
from sqltune.config import format_help, parse_args

GROUPS = (EvalArguments,)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "eval"))
        return 0
    (args,) = parse_args(GROUPS, argv)
    from sqltune.evaluate.report import print_summary
    from sqltune.evaluate.run import evaluate

    options = dataclasses.asdict(args)
    del options["raw"]  # deprecated; EvalArguments has warned about it
    report = evaluate(
        options.pop("pred"), options.pop("gold"), options.pop("db_dir"), progress=True, **options
    )
    print_summary(report)
    if args.output:
        print(f"report written to {args.output}")
    return 0
