"""Benchmark and database readers. Each turns its files into `Example`s plus the `Schema` of every
database they use; `read_source` picks the reader named by `source=`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.example import Example
from sqltune.data.schema import Schema
from sqltune.errors import ConfigError, DataError


@dataclass
class SourceData:
    examples: list[Example]
    schemas: dict[str, Schema]
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    read: int = 0  # records read, before skipping
    tables_path: str | None = None
    db_dir: str | None = None
    database: str | None = None  # source=sqlite: the file or URL (password hidden)


class Skips:
    """Counts records that are skipped, or raises at the first one when `strict`."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.counts: Counter = Counter()

    def add(self, reason: str, where: str) -> None:
        if self.strict:
            raise DataError(f"{where}: {reason} (strict=true)")
        self.counts[reason] += 1


# source name -> "module:function"; modules are imported only when used.
READERS = {
    "spider": "sqltune.data.sources.spider:read_spider",
    "bird": "sqltune.data.sources.bird:read_bird",
    "sparc": "sqltune.data.sources.multiturn:read_multiturn",
    "cosql": "sqltune.data.sources.multiturn:read_multiturn",
    "chase": "sqltune.data.sources.multiturn:read_multiturn",
    "wikisql": "sqltune.data.sources.wikisql:read_wikisql",
    "sqlite": "sqltune.data.sources.own:read_sqlite",
    "jsonl": "sqltune.data.sources.own:read_jsonl",
    "demo": "sqltune.data.demo:read_demo",
    "synth": "sqltune.data.sources.synthesized:read_synthesized",
}


def read_source(args: SourceArguments) -> SourceData:
    target = READERS.get(args.source)
    if target is None:
        raise ConfigError(f"source: unknown '{args.source}', choose one of {', '.join(sorted(READERS))}")
    module, function = target.split(":")
    reader: Callable[[SourceArguments], SourceData] = getattr(import_module(module), function)
    return reader(args)


def require_dir(args: SourceArguments) -> str:
    if not args.data_dir:
        raise ConfigError(f"source={args.source} needs data_dir=<folder of the {args.source} files>")
    if not Path(args.data_dir).is_dir():
        problem = "is a file, not a folder" if Path(args.data_dir).exists() else "not found"
        raise DataError(f"data_dir {args.data_dir}: {problem}")
    return args.data_dir
