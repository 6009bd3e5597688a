"""Argument groups of every command, as plain dataclasses (parsed by `sqltune.config.parse_args`).

Names follow LLaMA-Factory where one exists. Each field carries a `help` text that
`sqltune <command> --help` prints. The training group is transformers' own
`Seq2SeqTrainingArguments` (see `sqltune.train`), so every Trainer option works as-is.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _help(text: str) -> dict:
    return {"help": text}


PROMPT_FORMATS = ("dbgpt", "ddl")
SOURCES = ("spider", "bird", "sparc", "cosql", "chase", "wikisql", "sqlite", "jsonl", "demo")


@dataclass
class PromptArguments:
    """How a schema and a question become prompt text (shared by `data`, `train` and `predict`)."""

    prompt_format: str = field(
        default="dbgpt", metadata=_help("dbgpt (DB-GPT-Hub sentences) or ddl (CREATE TABLE)")
    )
    include_types: bool = field(default=True, metadata=_help("ddl: write column types"))
    include_foreign_keys: bool = field(default=True, metadata=_help("write foreign keys"))
    sample_values: int = field(default=0, metadata=_help("distinct sample values per column (0 = none)"))
    sample_rows: int = field(default=0, metadata=_help("ddl: sample rows per table as a comment (0 = none)"))
    one_shot: bool = field(default=False, metadata=_help("prepend DB-GPT-Hub's one-shot example"))
    max_schema_chars: int | None = field(
        default=None,
        metadata=_help("shorten the schema to this many characters (least related tables go first)"),
    )

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(
                f"prompt_format: unknown '{self.prompt_format}', choose one of {', '.join(PROMPT_FORMATS)}"
            )
        for name in ("sample_values", "sample_rows"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0")


@dataclass
class SourceArguments:
    """`sqltune data`: which benchmark or database to read and where to write the records."""

    source: str = field(default="spider", metadata=_help(f"one of {', '.join(SOURCES)}"))
    data_dir: str | None = field(default=None, metadata=_help("folder of the benchmark files"))
    split: str = field(default="train", metadata=_help("train or dev (spider, chase, wikisql: also test)"))
    output_dir: str = field(
        default="data", metadata=_help("folder for the jsonl records and dataset_info.json")
    )
    dataset_name: str | None = field(default=None, metadata=_help("registry name (default <source>_<split>)"))
    tables: str | None = field(default=None, metadata=_help("tables.json path (default: found in data_dir)"))
    db_dir: str | None = field(
        default=None,
        metadata=_help(
            "folder of <db_id>/<db_id>.sqlite (default: found in data_dir; "
            "demo: where its databases are written, default <output_dir>/demo_databases)"
        ),
    )
    db: str | None = field(default=None, metadata=_help("source=sqlite: a SQLite file or SQLAlchemy URL"))
    questions: str | None = field(
        default=None, metadata=_help("source=sqlite|jsonl: question/SQL pairs (jsonl, json or csv)")
    )
    limit: int | None = field(default=None, metadata=_help("read at most this many examples"))
    strict: bool = field(default=False, metadata=_help("fail on the first bad record instead of skipping it"))
    tokenizer: str | None = field(
        default=None, metadata=_help("tokenizer for prompt length stats (default: characters)")
    )
    seed: int = field(default=42, metadata=_help("seed for anything random (synthesis, one-shot choice)"))


@dataclass
class SynthArguments:
    """`sqltune data synth`: question/SQL pairs synthesized from a SQLite database's schema and values."""

    db: str | None = field(
        default=None, metadata=_help("SQLite file, or a folder of <db>/<db>.sqlite or *.sqlite files")
    )
    output: str = field(default="data/synth.jsonl", metadata=_help("question/SQL pairs as jsonl"))
    per_db: int = field(default=200, metadata=_help("pairs to write per database"))
    seed: int = field(default=42, metadata=_help("random seed"))
