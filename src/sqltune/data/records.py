"""Supervised fine-tuning records and the `dataset_info.json` registry.

A dataset `NAME` in a folder is four files, written atomically:

* `NAME.jsonl`: one alpaca record per example, `{db_id, instruction, input, output, history}`, the
  format DB-GPT-Hub and LLaMA-Factory read;
* `NAME.examples.jsonl`: the `Example` behind each record, line for line (question, evidence,
  history, gold SQL), so training and prediction can rebuild a shorter prompt with the same rule;
* `NAME.schemas.json`: the `Schema` of every database the records use;
* an entry in `dataset_info.json` (file name, column mapping, formatting, and sqltune's own block:
  source, prompt options, tables file, database folder, counts).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqltune.args import PromptArguments
from sqltune.data.example import Example
from sqltune.data.introspect import attach_samples, with_declared_types
from sqltune.data.prompts import Prompt, build_prompt, fit_prompt, schema_budget, tables_in_sql
from sqltune.data.schema import Schema
from sqltune.data.sources import Skips, SourceData
from sqltune.errors import DataError
from sqltune.files import read_json, read_jsonl, write_json, write_jsonl

REGISTRY = "dataset_info.json"
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}


def to_record(example: Example, prompt: Prompt) -> dict:
    return {
        "db_id": example.db_id,
        "instruction": prompt.instruction,
        "input": prompt.input,
        "output": example.sql,
        "history": [list(turn) for turn in prompt.history],
    }


def has_database(schema: Schema) -> bool:
    return bool(schema.db_path) and Path(schema.db_path).is_file()


def has_values(schema: Schema) -> bool:
    """Whether sample values came with the schema (a SQLAlchemy URL, the rows of a WikiSQL table)."""
    return any(column.values for table in schema.tables for column in table.columns)


def prepare_schemas(schemas: dict[str, Schema], used: set[str], args: PromptArguments) -> dict[str, Schema]:
    """The schemas the examples use, with declared types (ddl) and sample values attached when asked."""
    prepared = {}
    for db_id in sorted(used):
        schema = schemas[db_id]
        has_db = has_database(schema)
        if has_db and args.prompt_format in ("ddl", "compact"):
            schema = with_declared_types(schema)
        if has_db:
            schema = attach_samples(schema, args.sample_values, args.sample_rows)
        prepared[db_id] = schema
    return prepared


@dataclass
class BuildResult:
    records: list[dict] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    schemas: dict[str, Schema] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    shortened: int = 0


def build_records(data: SourceData, args: PromptArguments, strict: bool = False) -> BuildResult:
    """Turn a source's examples into records, skipping (and counting) those that cannot be built."""
    skips = Skips(strict)
    skips.counts.update(data.skipped)
    needs_db = args.sample_values > 0 or args.sample_rows > 0
    usable = []
    for example in data.examples:
        schema = data.schemas[example.db_id]
        if needs_db and not (has_database(schema) or has_values(schema)):
            skips.add(
                "database file missing (needed for sample values)", f"example {example.id} ({example.db_id})"
            )
            continue
        usable.append(example)
    schemas = prepare_schemas(data.schemas, {e.db_id for e in usable}, args)
    result = BuildResult(schemas=schemas)
    budget = schema_budget(args)
    for example in usable:
        schema = schemas[example.db_id]
        if budget is None:
            prompt = build_prompt(example, schema, args)
        else:
            protected = tables_in_sql(example.sql, schema)
            prompt, shortening = fit_prompt(example, schema, args, budget, protected)
            if shortening.values_dropped or shortening.tables_dropped:
                result.shortened += 1
        result.records.append(to_record(example, prompt))
        result.examples.append(example)
    result.skipped = skips.counts
    return result


def dataset_files(output_dir: str | Path, name: str) -> tuple[Path, Path, Path, Path]:
    """The files `write_dataset` writes for `name`: records, examples, schemas and the registry."""
    output_dir = Path(output_dir)
    return (
        output_dir / f"{name}.jsonl",
        output_dir / f"{name}.examples.jsonl",
        output_dir / f"{name}.schemas.json",
        output_dir / REGISTRY,
    )


def write_dataset(output_dir: str | Path, name: str, result: BuildResult, info: dict) -> Path:
    """Write the dataset files and register it; return the records file."""
    records_path, examples_path, schemas_path, _ = dataset_files(output_dir, name)
    write_jsonl(examples_path, (e.to_dict() for e in result.examples))
    write_json(schemas_path, {k: s.to_dict() for k, s in result.schemas.items()}, indent=None)
    write_jsonl(records_path, result.records)
    entry = {
        "file_name": records_path.name,
        "formatting": "alpaca",
        "columns": dict(ALPACA_COLUMNS),
        "sqltune": {
            "examples": examples_path.name,
            "schemas": schemas_path.name,
            "count": len(result.records),
            **info,
        },
    }
    register(output_dir, name, entry)
    return records_path


def load_registry(dataset_dir: str | Path) -> dict:
    path = Path(dataset_dir) / REGISTRY
    if not path.is_file():
        return {}
    registry = read_json(path, "dataset registry")
    if not isinstance(registry, dict):
        raise DataError(f"{path}: expected a JSON object of dataset name -> entry")
    return registry


def register(dataset_dir: str | Path, name: str, entry: dict) -> None:
    """Add or replace one entry of dataset_info.json, keeping the others."""
    registry = load_registry(dataset_dir)
    registry[name] = entry
    write_json(Path(dataset_dir) / REGISTRY, registry, indent=2)


def dataset_entry(dataset_dir: str | Path, name: str) -> dict:
    """The registry entry of `name`. Every command looks datasets up here, so this is where a
    missing one is built (the embedded demo) or explained (the command that builds it)."""
    from sqltune.data.missing import provide_missing

    registry = load_registry(dataset_dir)
    if name not in registry:
        provide_missing(dataset_dir, name, sorted(registry))
        registry = load_registry(dataset_dir)
    return registry[name]


def registered_db_dir(entry: dict, name: str, needed_by: str) -> Path:
    """The folder of `<db_id>/<db_id>.sqlite` a registered dataset was built from (its `db_dir`),
    for a command that executes SQL on its questions' databases (`needed_by` names it)."""
    from sqltune.errors import ConfigError

    folder = entry.get("sqltune", {}).get("db_dir") or entry.get("db_dir")
    if not folder:
        raise ConfigError(
            f"{needed_by} executes answers: dataset '{name}' records no db_dir (the folder of "
            "<db_id>/<db_id>.sqlite); build it with sqltune data ... db_dir=..."
        )
    return Path(folder)


@dataclass
class Dataset:
    """A registered dataset read back: records, their examples, schemas and the registry entry."""

    name: str
    records: list[dict]
    examples: list[Example]
    schemas: dict[str, Schema]
    entry: dict

    @property
    def prompt_args(self) -> PromptArguments:
        saved = self.entry.get("sqltune", {}).get("prompt", {})
        names = {f.name for f in dataclasses.fields(PromptArguments)}
        return PromptArguments(**{k: v for k, v in saved.items() if k in names})


def load_dataset(dataset_dir: str | Path, name: str) -> Dataset:
    dataset_dir = Path(dataset_dir)
    entry = dataset_entry(dataset_dir, name)
    records = read_jsonl(dataset_dir / entry["file_name"], f"records of dataset '{name}'")
    extra = entry.get("sqltune", {})
    examples: list[Example] = []
    schemas: dict[str, Schema] = {}
    if "examples" in extra:
        examples = [
            Example.from_dict(row) for row in read_jsonl(dataset_dir / extra["examples"], "examples file")
        ]
        if len(examples) != len(records):
            raise DataError(
                f"{dataset_dir / extra['examples']}: {len(examples)} examples for the {len(records)} records of "
                f"{dataset_dir / entry['file_name']}; rebuild the dataset"
            )
    if "schemas" in extra:
        raw = read_json(dataset_dir / extra["schemas"], "schemas file")
        schemas = {k: Schema.from_dict(v) for k, v in raw.items()}
    return Dataset(name, records, examples, schemas, entry)


def length_stats(lengths: list[int]) -> dict:
    if not lengths:
        return {"min": 0, "mean": 0.0, "median": 0.0, "p90": 0, "max": 0}
    ordered = sorted(lengths)
    return {
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 1),
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max": ordered[-1],
    }
