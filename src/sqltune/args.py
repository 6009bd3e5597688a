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


@dataclass
class EvalArguments:
    """`sqltune eval`: score predictions against gold SQL (Spider EM/EX, BIRD EX/R-VES)."""

    pred: str | None = field(default=None, metadata=_help("predictions: one SQL per line, or jsonl"))
    gold: str | None = field(
        default=None, metadata=_help("gold: 'SQL<TAB>db_id' lines, or a Spider/SParC/BIRD json")
    )
    db_dir: str | None = field(
        default=None, metadata=_help("folder of <db_id>/<db_id>.sqlite (+ test suites)")
    )
    tables: str | None = field(default=None, metadata=_help("tables.json (needed for exact match)"))
    etype: str = field(default="all", metadata=_help("all, exec (execution) or match (exact set match)"))
    plug_value: bool = field(default=False, metadata=_help("plug the gold values into the prediction"))
    keep_distinct: bool = field(default=False, metadata=_help("keep DISTINCT when comparing results"))
    timeout: float = field(default=30.0, metadata=_help("seconds allowed per query"))
    workers: int = field(default=0, metadata=_help("worker processes (0 = one per CPU)"))
    output: str | None = field(default=None, metadata=_help("write the full report (JSON) here"))
    format: str = field(default="spider", metadata=_help("spider or bird"))
    raw: bool = field(default=False, metadata=_help("score lines as they are (no SQL extraction)"))
    max_rows: int = field(default=1_000_000, metadata=_help("rows a gold query may return"))
    ves_repeats: int = field(default=10, metadata=_help("bird: timed runs per correct query for R-VES"))

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        for name in ("pred", "gold", "db_dir"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: required (--{name.replace('_', '-')} PATH)")
        if self.etype not in ("all", "exec", "match"):
            raise ConfigError(f"etype: unknown '{self.etype}', choose all, exec or match")
        if self.format not in ("spider", "bird"):
            raise ConfigError(f"format: unknown '{self.format}', choose spider or bird")
        if self.timeout <= 0 or self.workers < 0 or self.max_rows < 1 or self.ves_repeats < 0:
            raise ConfigError("timeout must be > 0; workers, max_rows and ves_repeats must not be negative")
