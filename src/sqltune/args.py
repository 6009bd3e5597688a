"""Argument groups of every command, as plain dataclasses (parsed by `sqltune.config.parse_args`).

Names follow LLaMA-Factory where one exists. Each field carries a `help` text that
`sqltune <command> --help` prints. The training group is transformers' own
`Seq2SeqTrainingArguments` (see `sqltune.train`), so every Trainer option works as-is.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _help(text: str) -> dict:
    return {"help": text}


PROMPT_FORMATS = ("dbgpt", "ddl", "compact")
DIALECTS = ("sqlite", "postgres", "mysql")
SOURCES = ("spider", "bird", "sparc", "cosql", "chase", "wikisql", "sqlite", "jsonl", "demo", "synth")


@dataclass
class PromptArguments:
    """How a schema and a question become prompt text (shared by `data`, `train` and `predict`)."""

    prompt_format: str = field(
        default="dbgpt",
        metadata=_help("dbgpt (DB-GPT-Hub sentences), ddl (CREATE TABLE) or compact (a line per table)"),
    )
    dialect: str = field(
        default="sqlite",
        metadata=_help(
            "SQL dialect the prompt names and the gold SQL is written in: sqlite, postgres or mysql "
            "(data: gold SQL transpiled from SQLite and checked on db_url)"
        ),
    )
    include_types: bool = field(default=True, metadata=_help("ddl, compact: write column types"))
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
        if self.dialect not in DIALECTS:
            raise ConfigError(f"dialect: unknown '{self.dialect}', choose one of {', '.join(DIALECTS)}")
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
    db: str | None = field(
        default=None,
        metadata=_help("source=sqlite: a SQLite file or SQLAlchemy URL; source=synth: a SQLite file"),
    )
    db_url: str | None = field(
        default=None,
        metadata=_help(
            "dialect=postgres|mysql: the server holding the databases (sqltune db load), "
            "{db_id} where the name goes, e.g. postgresql://user@host:5432/{db_id}"
        ),
    )
    questions: str | None = field(
        default=None, metadata=_help("source=sqlite|jsonl: question/SQL pairs (jsonl, json or csv)")
    )
    synth_pairs: int = field(default=300, metadata=_help("source=synth: pairs to synthesize from db"))
    holdout: float = field(
        default=0.2,
        metadata=_help("source=synth: pairs held out as dev, a fraction (< 1) or a number (>= 1)"),
    )
    limit: int | None = field(default=None, metadata=_help("read at most this many examples"))
    strict: bool = field(default=False, metadata=_help("fail on the first bad record instead of skipping it"))
    tokenizer: str | None = field(
        default=None, metadata=_help("tokenizer for prompt length stats (default: characters)")
    )
    seed: int = field(default=42, metadata=_help("seed for anything random (synthesis, one-shot choice)"))

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        check_synth_sizes(self.synth_pairs, self.holdout)
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit: must be >= 1 (leave it out to read every example)")


def check_synth_sizes(synth_pairs: int, holdout: float) -> None:
    from sqltune.errors import ConfigError

    if synth_pairs < 2 or not holdout > 0:
        raise ConfigError("synth_pairs must be >= 2 and holdout > 0")


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
class CorpusArguments:
    """`sqltune data corpus`: a continued pre-training corpus (stage=pt) from databases and their SQL."""

    db_dir: str | None = field(
        default=None, metadata=_help("folder of <db_id>/<db_id>.sqlite (or *.sqlite) databases")
    )
    databases: str | None = field(
        default=None, metadata=_help("only these db_ids, comma-separated (default: every database)")
    )
    questions: str | None = field(
        default=None,
        metadata=_help("Spider-style question/SQL files (json or jsonl), comma-separated: their SQL too"),
    )
    rows_per_table: int = field(default=3, metadata=_help("sample rows per table (0 = DDL only)"))
    output_dir: str = field(default="data", metadata=_help("folder for the corpus and dataset_info.json"))
    dataset_name: str = field(default="corpus", metadata=_help("registry name (file <name>.jsonl)"))

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        if self.rows_per_table < 0:
            raise ConfigError("rows_per_table: must be >= 0")


@dataclass
class PairsArguments:
    """`sqltune data pairs`: preference pairs and KTO labels from a run's own answers, judged by execution."""

    run_dir: str | None = field(default=None, metadata=_help("the run directory whose model answers"))
    dataset: str | None = field(
        default=None, metadata=_help("registered dataset with db_id, gold SQL and db_dir (e.g. demo_train)")
    )
    dataset_dir: str = field(default="data", metadata=_help("folder holding the dataset's dataset_info.json"))
    output_dir: str = field(
        default="data", metadata=_help("folder for the new datasets and dataset_info.json")
    )
    dataset_name: str | None = field(
        default=None, metadata=_help("name of the ranking dataset (default <dataset>_pairs; KTO: <name>_kto)")
    )
    num_candidates: int = field(default=8, metadata=_help("answers sampled per question"))
    do_sample: bool = field(default=True, metadata=_help("sample (true) or take the best beams (false)"))
    temperature: float = field(default=1.0, metadata=_help("sampling temperature"))
    top_p: float = field(default=0.95, metadata=_help("sampling: nucleus probability mass"))
    top_k: int = field(default=50, metadata=_help("sampling: keep the k most likely tokens (0 = all)"))
    max_new_tokens: int = field(default=256, metadata=_help("most tokens per answer"))
    timeout: float = field(default=2.0, metadata=_help("seconds an answer's SQL may run"))
    db_url: str | None = field(
        default=None,
        metadata=_help(
            "run answers on this server ({db_id} where the name goes) instead of the dataset's SQLite "
            "files; needed for datasets built with dialect=postgres|mysql"
        ),
    )
    kto_per_question: int = field(
        default=4, metadata=_help("KTO: most distinct model answers per question (the gold is added)")
    )
    limit: int | None = field(default=None, metadata=_help("only the first N questions"))
    seed: int = field(default=42, metadata=_help("random seed (question i samples with seed + i)"))
    infer_backend: str = field(default="hf", metadata=_help("hf (transformers) or vllm (GPU)"))
    infer_dtype: str = field(default="auto", metadata=_help("auto, float32, bfloat16 or float16"))
    overwrite: bool = field(default=False, metadata=_help("sample every question again instead of resuming"))

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        _check_choice("infer_backend", self.infer_backend, ("hf", "vllm"))
        _check_choice("infer_dtype", self.infer_dtype, ("auto", "float32", "bfloat16", "float16"))
        if self.num_candidates < 1 or self.max_new_tokens < 1 or self.kto_per_question < 0:
            raise ConfigError("num_candidates and max_new_tokens must be >= 1, kto_per_question >= 0")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.timeout <= 0:
            raise ConfigError("temperature and timeout must be > 0, top_p in (0, 1] and top_k >= 0")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit: must be >= 1 (leave it out to use every question)")


@dataclass
class AgentTracesArguments:
    """`sqltune data agent`: SQL agent conversations (tool calls and their real observations) per question."""

    source_dataset: str | None = field(
        default=None,
        metadata=_help("registered dataset with db_id, gold SQL and databases (e.g. spider_train)"),
    )
    dataset_dir: str = field(default="data", metadata=_help("folder holding the source's dataset_info.json"))
    output_dir: str = field(default="data", metadata=_help("folder for the traces and dataset_info.json"))
    dataset_name: str | None = field(
        default=None, metadata=_help("name of the agent dataset (default <source_dataset>_agent)")
    )
    run_dir: str | None = field(
        default=None,
        metadata=_help("an SFT run whose wrong answers become repair traces (predicted unless predictions=)"),
    )
    predictions: str | None = field(
        default=None, metadata=_help("predictions jsonl of `sqltune predict` on source_dataset (its answers)")
    )
    max_samples: int | None = field(default=None, metadata=_help("only the first N questions"))
    repair_ratio: float = field(
        default=0.5,
        metadata=_help(
            "share of questions (beyond the model's own mistakes) that also get a perturbed-gold repair"
        ),
    )
    inspect: bool = field(
        default=True, metadata=_help("direct traces describe the gold SQL's tables before running it")
    )
    timeout: float = field(default=5.0, metadata=_help("seconds a tool's query may run"))
    max_new_tokens: int = field(
        default=256, metadata=_help("run_dir without predictions: most tokens per answer")
    )
    seed: int = field(default=42, metadata=_help("random seed (question i draws with its own seed from it)"))
    db_url: str | None = field(
        default=None,
        metadata=_help(
            "run the tools on this server ({db_id} where the name goes) instead of the dataset's SQLite "
            "files; needed for datasets built with dialect=postgres|mysql"
        ),
    )

    def __post_init__(self) -> None:
        from sqltune.db.urls import is_url
        from sqltune.errors import ConfigError

        if not 0 <= self.repair_ratio <= 1:
            raise ConfigError("repair_ratio: must be in [0, 1]")
        if self.timeout <= 0 or self.max_new_tokens < 1:
            raise ConfigError("timeout must be > 0 and max_new_tokens >= 1")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError("max_samples: must be >= 1 (leave it out to use every question)")
        if self.db_url is not None and not is_url(self.db_url):
            raise ConfigError(f"db_url: '{self.db_url}' is not a URL (postgresql://user@host:5432/{{db_id}})")


@dataclass
class DbLoadArguments:
    """`sqltune db load`: SQLite databases into a PostgreSQL or MySQL/MariaDB server, one database each."""

    url: str | None = field(
        default=None,
        metadata=_help(
            "the server, {db_id} where each database's name goes: postgresql://user@host:5432/{db_id} "
            "or mysql://...; a URL that names no database means /{db_id}"
        ),
    )
    db_dir: str | None = field(default=None, metadata=_help("folder of <db_id>/<db_id>.sqlite databases"))
    source: str | None = field(
        default=None, metadata=_help("demo: load the embedded demo databases instead of a db_dir")
    )
    db_ids: list[str] | None = field(
        default=None, metadata=_help("only these db_ids, comma-separated (default: every database)")
    )

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        if not self.url:
            raise ConfigError("url: required, e.g. url=postgresql://user@127.0.0.1:5432/{db_id}")
        if self.source not in (None, "demo"):
            raise ConfigError(f"source: unknown '{self.source}', the one source is demo (or give db_dir=)")
        if (self.source is None) == (self.db_dir is None):
            raise ConfigError("give db_dir=<folder of <db_id>/<db_id>.sqlite> or source=demo, one of them")


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
    db_url: str | None = field(
        default=None,
        metadata=_help(
            "run the queries on a server instead: postgresql://user@host:5432/{db_id} or mysql://... "
            "({db_id} names each database; EX only, unless db_dir gives EM and hardness)"
        ),
    )
    tables: str | None = field(default=None, metadata=_help("tables.json (needed for exact match)"))
    etype: str = field(default="all", metadata=_help("all, exec (execution) or match (exact set match)"))
    plug_value: bool = field(default=False, metadata=_help("plug the gold values into the prediction"))
    keep_distinct: bool = field(default=False, metadata=_help("keep DISTINCT when comparing results"))
    timeout: float = field(default=30.0, metadata=_help("seconds allowed per query"))
    workers: int = field(default=0, metadata=_help("worker processes (0 = one per CPU)"))
    output: str | None = field(default=None, metadata=_help("write the full report (JSON) here"))
    format: str = field(default="spider", metadata=_help("spider or bird"))
    extract: bool = field(
        default=False,
        metadata=_help("pull the SQL out of raw model text first; the official scores are kept beside"),
    )
    raw: bool = field(default=False, metadata=_help("deprecated: lines are scored as written by default"))
    max_rows: int = field(default=1_000_000, metadata=_help("rows a gold query may return"))
    ves_repeats: int = field(default=10, metadata=_help("bird: timed runs per correct query for R-VES"))

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        for name in ("pred", "gold"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: required (--{name.replace('_', '-')} PATH)")
        if not self.db_dir and not self.db_url:
            raise ConfigError("db_dir: required (--db-dir PATH), or a server's --db-url URL")
        if self.etype not in ("all", "exec", "match"):
            raise ConfigError(f"etype: unknown '{self.etype}', choose all, exec or match")
        if self.format not in ("spider", "bird"):
            raise ConfigError(f"format: unknown '{self.format}', choose spider or bird")
        if self.timeout <= 0 or self.workers < 0 or self.max_rows < 1 or self.ves_repeats < 0:
            raise ConfigError("timeout must be > 0; workers, max_rows and ves_repeats must not be negative")
        if self.raw and self.extract:
            raise ConfigError("raw and extract contradict each other: give only --extract to extract SQL")
        if self.raw:  # it once turned extraction off; scoring lines as written is now the default
            import warnings

            from sqltune.errors import SqltuneWarning

            message = "--raw is deprecated and does nothing: lines are scored as written by default"
            warnings.warn(message, SqltuneWarning, stacklevel=2)


# ---- training ----------------------------------------------------------------------------------------
TORCH_DTYPES = ("auto", "float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
ROPE_SCALINGS = ("linear", "dynamic", "yarn", "llama3")
FINETUNING_TYPES = ("lora", "freeze", "full")
# stage -> the module of sqltune.train that builds it (`build(...) -> StageRun`)
STAGE_MODULES = {
    "pt": "pretrain",
    "sft": "sft",
    "rm": "reward_model",
    "dpo": "preference",
    "kto": "kto",
    "orpo": "preference",
    "simpo": "preference",
    "ppo": "ppo",
    "grpo": "grpo",
}
STAGES = tuple(STAGE_MODULES)


def stage_available(stage: str) -> bool:
    """Whether the stage's module is installed (every stage of STAGES once built)."""
    from importlib.util import find_spec

    return find_spec(f"sqltune.train.{STAGE_MODULES[stage]}") is not None


def _names(value: str | list[str] | None) -> list[str]:
    """A comma-separated string (command line) or a YAML list, as a clean list of names."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [item.strip() for item in items if item.strip()]


def _check_choice(name: str, value: object, choices: tuple) -> None:
    from sqltune.errors import ConfigError

    if value is not None and value not in choices:
        raise ConfigError(f"{name}: unknown '{value}', choose one of {', '.join(map(str, choices))}")


QUANTIZATION_METHODS = ("bitsandbytes", "hqq", "eetq")


@dataclass
class ModelArguments:
    """Which model to load and how (`train`, and `predict`/`export` when they do not read a run card)."""

    model_name_or_path: str = field(
        default="smollm2-135m",
        metadata=_help("model directory, a .gguf file, or 'smollm2-135m' (the embedded default)"),
    )
    adapter_name_or_path: str | None = field(
        default=None, metadata=_help("a LoRA adapter directory to load (and keep training)")
    )
    template: str = field(
        default="auto",
        metadata=_help("chat template: auto (the tokenizer's own, else default), hf, default, llama2, ..."),
    )
    torch_dtype: str = field(default="auto", metadata=_help(f"one of {', '.join(TORCH_DTYPES)}"))
    attn_implementation: str | None = field(
        default=None, metadata=_help(f"one of {', '.join(ATTN_IMPLEMENTATIONS)} (default: the model's)")
    )
    rope_scaling: str | None = field(default=None, metadata=_help(f"one of {', '.join(ROPE_SCALINGS)}"))
    rope_factor: float = field(default=2.0, metadata=_help("context extension factor for rope_scaling"))
    quantization_bit: int | None = field(
        default=None, metadata=_help("4 or 8: load the base model quantised (QLoRA) by quantization_method")
    )
    quantization_method: str = field(
        default="bitsandbytes",
        metadata=_help(
            f"one of {', '.join(QUANTIZATION_METHODS)}: the quantiser of quantization_bit "
            "(sqltune.train.methods.gpu)"
        ),
    )
    quantization_type: str = field(default="nf4", metadata=_help("4-bit data type: nf4 or fp4"))
    double_quantization: bool = field(
        default=True, metadata=_help("4-bit: quantise the quantisation constants")
    )
    trust_remote_code: bool = field(
        default=False, metadata=_help("allow model code shipped with the checkpoint")
    )
    shift_attn: bool = field(
        default=False,
        metadata=_help(
            "LongLoRA's shifted sparse attention (S2-Attn) while training, llama-family models: "
            "attention within groups of group_size_ratio of the sequence (inference attends as usual)"
        ),
    )
    group_size_ratio: float = field(
        default=0.25, metadata=_help("shift_attn: group size as a fraction of the sequence (paper: 1/4)")
    )
    mixture_of_depths: str | None = field(
        default=None,
        metadata=_help(
            "convert (a model to Mixture-of-Depths) or load (a converted one), with the mixture-of-depth "
            "package; not usable with transformers 5 (docs/training.md)"
        ),
    )
    use_unsloth: bool = field(
        default=False, metadata=_help("train with Unsloth's kernels (CUDA GPU and the unsloth package)")
    )
    enable_liger_kernel: bool = field(
        default=False,
        metadata=_help(
            "Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) through "
            "transformers' use_liger_kernel (CUDA GPU and the liger-kernel package)"
        ),
    )

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        _check_choice("torch_dtype", self.torch_dtype, TORCH_DTYPES)
        _check_choice("attn_implementation", self.attn_implementation, ATTN_IMPLEMENTATIONS)
        _check_choice("rope_scaling", self.rope_scaling, ROPE_SCALINGS)
        _check_choice("quantization_bit", self.quantization_bit, (4, 8))
        _check_choice("quantization_type", self.quantization_type, ("nf4", "fp4"))
        _check_choice("quantization_method", self.quantization_method, QUANTIZATION_METHODS)
        if self.quantization_method != "bitsandbytes" and not self.quantization_bit:
            raise ConfigError(f"quantization_method={self.quantization_method}: give quantization_bit=4 or 8")
        if self.rope_factor <= 1.0 and self.rope_scaling:
            raise ConfigError("rope_factor: must be > 1 to extend the context")
        if not 0 < self.group_size_ratio <= 1:
            raise ConfigError("group_size_ratio: must be in (0, 1]")
        if self.shift_attn and self.attn_implementation not in (None, "sdpa", "eager"):
            raise ConfigError(
                f"shift_attn=true brings its own attention: leave out attn_implementation={self.attn_implementation}"
            )
        _check_choice("mixture_of_depths", self.mixture_of_depths, ("convert", "load"))
        if self.mixture_of_depths:
            from sqltune.train.methods.mod import require_mixture_of_depths

            require_mixture_of_depths(self.mixture_of_depths)


@dataclass
class DataArguments:
    """Which registered datasets to train on and how to turn them into token sequences."""

    dataset: str | None = field(
        default=None, metadata=_help("registered dataset name(s), comma-separated (see dataset_info.json)")
    )
    dataset_dir: str = field(default="data", metadata=_help("folder holding dataset_info.json"))
    eval_dataset: str | None = field(default=None, metadata=_help("registered dataset(s) for eval loss"))
    cutoff_len: int = field(
        default=1024,
        metadata=_help("max tokens of prompt + response; longer prompts lose schema, never the question"),
    )
    val_size: float = field(
        default=0.0, metadata=_help("hold out this fraction (< 1) or number (>= 1) of examples for eval")
    )
    packing: bool = field(
        default=False, metadata=_help("padding-free batches (sequences concatenated, attention kept apart)")
    )
    max_samples: int | None = field(
        default=None, metadata=_help("use at most this many examples per dataset")
    )

    @property
    def dataset_names(self) -> list[str]:
        return _names(self.dataset)

    @property
    def eval_dataset_names(self) -> list[str]:
        return _names(self.eval_dataset)

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        if self.cutoff_len < 8:
            raise ConfigError("cutoff_len: must be >= 8")
        if self.val_size < 0:
            raise ConfigError("val_size: must be >= 0")
        if self.val_size and self.eval_dataset:
            raise ConfigError("give either val_size or eval_dataset, not both")


@dataclass
class FinetuningArguments:
    """What to train: LoRA adapters (with their variants), the last layers (freeze), or everything (full)."""

    stage: str = field(
        default="sft",
        metadata=_help(
            "training stage: pt (continued pre-training on text), sft (supervised fine-tuning), "
            "rm (a reward model on pairs), dpo, orpo, simpo (preference pairs), kto (answers labelled "
            "good or bad), grpo (RL from the execution reward), ppo (RL with a value head: the "
            "execution reward or reward_model)"
        ),
    )
    finetuning_type: str = field(default="lora", metadata=_help(f"one of {', '.join(FINETUNING_TYPES)}"))
    lora_rank: int = field(default=8, metadata=_help("LoRA rank r"))
    lora_alpha: int | None = field(default=None, metadata=_help("LoRA alpha (default 2 * lora_rank)"))
    lora_dropout: float = field(default=0.0, metadata=_help("dropout on the LoRA input"))
    lora_layers: int | None = field(
        default=None,
        metadata=_help(
            "LoRA on the last N decoder layers only: the backward pass stops below them (faster; "
            "default: every layer)"
        ),
    )
    lora_target: str = field(
        default="all",
        metadata=_help("module names, comma-separated, or 'all' (every linear layer but the head)"),
    )
    additional_target: str | None = field(
        default=None, metadata=_help("modules trained in full beside LoRA (e.g. embed_tokens,lm_head)")
    )
    use_dora: bool = field(default=False, metadata=_help("weight-decomposed LoRA (DoRA)"))
    use_rslora: bool = field(default=False, metadata=_help("rank-stabilised LoRA scaling alpha/sqrt(r)"))
    pissa_init: bool = field(default=False, metadata=_help("initialise LoRA from principal singular vectors"))
    pissa_iter: int = field(default=16, metadata=_help("PiSSA: fast-SVD iterations (-1 = exact SVD)"))
    loftq_init: bool = field(default=False, metadata=_help("LoftQ initialisation (4-bit aware LoRA init)"))
    loraplus_lr_ratio: float | None = field(
        default=None, metadata=_help("LoRA+: learning rate of B matrices = ratio * learning_rate")
    )
    freeze_trainable_layers: int = field(
        default=2, metadata=_help("freeze: train the last N layers (negative: the first N)")
    )
    freeze_trainable_modules: str = field(
        default="all", metadata=_help("freeze: modules of those layers to train (e.g. mlp,self_attn) or all")
    )
    freeze_extra_modules: str | None = field(
        default=None,
        metadata=_help("freeze: modules outside the layers to train too (e.g. norm,embed_tokens)"),
    )
    use_llama_pro: bool = field(
        default=False,
        metadata=_help(
            "LLaMA Pro (freeze or lora): train only the blocks `sqltune expand` inserted; "
            "freeze_trainable_layers = its num_expand"
        ),
    )
    loss_chunk_size: int = field(
        default=1024, metadata=_help("response positions per chunk of the LM head in the loss (memory bound)")
    )
    # vision-language models (sqltune.train.multimodal); names are LLaMA-Factory's
    freeze_vision_tower: bool = field(
        default=True,
        metadata=_help("multimodal: keep the vision encoder frozen (LoRA on the language model)"),
    )
    train_mm_proj_only: bool = field(
        default=False,
        metadata=_help(
            "multimodal: train only the projector between vision encoder and language model (full)"
        ),
    )
    # full-parameter methods with less optimizer memory (sqltune.train.methods.optimizers); names
    # and defaults are LLaMA-Factory's
    use_galore: bool = field(
        default=False,
        metadata=_help("GaLore: full fine-tuning, Adam state in a low-rank gradient subspace (needs full)"),
    )
    galore_rank: int = field(default=16, metadata=_help("GaLore: rank of the projected gradients"))
    galore_target: str = field(
        default="all",
        metadata=_help("GaLore: linear modules projected, comma-separated, or all (all but the head)"),
    )
    galore_update_interval: int = field(
        default=200, metadata=_help("GaLore: steps between recomputing the projection (a gradient SVD)")
    )
    galore_scale: float = field(default=2.0, metadata=_help("GaLore: scale of the projected update"))
    galore_proj_type: str = field(
        default="std", metadata=_help("GaLore: std, reverse_std, right, left or full")
    )
    galore_layerwise: bool = field(
        default=False,
        metadata=_help("GaLore: update each weight in the backward pass (less memory; one process)"),
    )
    use_apollo: bool = field(
        default=False,
        metadata=_help("APOLLO: full fine-tuning with SGD-like memory, AdamW-like updates (needs full)"),
    )
    apollo_rank: int = field(default=16, metadata=_help("APOLLO: rank of the projected gradients"))
    apollo_target: str = field(
        default="all",
        metadata=_help("APOLLO: linear modules projected, comma-separated, or all (all but the head)"),
    )
    apollo_update_interval: int = field(
        default=200, metadata=_help("APOLLO: steps between renewing the projection")
    )
    apollo_scale: float = field(default=32.0, metadata=_help("APOLLO: scale of the update"))
    apollo_proj: str = field(default="random", metadata=_help("APOLLO: projection, random or svd"))
    apollo_proj_type: str = field(default="std", metadata=_help("APOLLO: std, right or left"))
    apollo_scale_type: str = field(
        default="channel", metadata=_help("APOLLO: gradient scaling per channel or per tensor")
    )
    apollo_layerwise: bool = field(
        default=False,
        metadata=_help("APOLLO: update each weight in the backward pass (less memory; one process)"),
    )
    use_badam: bool = field(
        default=False,
        metadata=_help("BAdam: full fine-tuning a block at a time, Adam state for that block (needs full)"),
    )
    badam_mode: str = field(
        default="layer",
        metadata=_help("BAdam: layer (one decoder layer at a time) or ratio (a fraction of every weight)"),
    )
    badam_start_block: int | None = field(
        default=None, metadata=_help("BAdam layer: the decoder layer trained first (default: by switch mode)")
    )
    badam_switch_mode: str = field(
        default="ascending", metadata=_help("BAdam layer: next block ascending, descending, random or fixed")
    )
    badam_switch_interval: int = field(
        default=50, metadata=_help("BAdam: optimizer steps per block (ratio: before the mask moves on)")
    )
    badam_update_ratio: float = field(
        default=0.05, metadata=_help("BAdam ratio: fraction of every weight's entries updated")
    )
    badam_mask_mode: str = field(
        default="adjacent", metadata=_help("BAdam ratio: adjacent entries or scatter (random entries)")
    )
    badam_verbose: int = field(
        default=0, metadata=_help("BAdam: 0 quiet, 1 print the trained block, 2 also its parameters")
    )
    # TRL's own names for the knobs of the later stages; None leaves TRL's default
    beta: float | None = field(
        default=None,
        metadata=_help(
            "dpo, kto: preference strength (TRL default 0.1); orpo: weight of the odds-ratio term "
            "(0.1); simpo: reward scale (0.1); grpo: KL penalty (TRL default 0.0)"
        ),
    )
    loss_type: str | None = field(
        default=None,
        metadata=_help(
            "dpo: sigmoid, ipo, hinge, ... (TRL default sigmoid; several, comma-separated, are "
            "summed); kto: kto or apo_zero_unpaired; grpo: dapo, grpo, ..."
        ),
    )
    pref_ftx: float = field(
        default=0.0,
        metadata=_help(
            "dpo: weight of a supervised loss on the chosen answer added to the preference loss "
            "(RPO; keeps the chosen answers likely)"
        ),
    )
    num_generations: int | None = field(
        default=None, metadata=_help("grpo: completions sampled per prompt (TRL default 8)")
    )
    max_completion_length: int | None = field(
        default=None, metadata=_help("grpo, ppo: most tokens per sampled completion (default 256)")
    )
    reward_timeout: float = field(
        default=2.0,
        metadata=_help("grpo, ppo: seconds a completion's SQL may run before it scores as failed"),
    )
    reward_db_url: str | None = field(
        default=None,
        metadata=_help(
            "grpo, ppo: run answers on this server ({db_id} where the name goes) instead of the "
            "dataset's SQLite files; needed for datasets built with dialect=postgres|mysql"
        ),
    )
    reward_weights: str = field(
        default="1,2,3",
        metadata=_help(
            "grpo, ppo: the execution reward's weights for format, executes, result match "
            "(+w met, -w not; default SQL-R1's 1,2,3)"
        ),
    )
    # ppo: LLaMA-Factory's keys where it has them (reward_model, ppo_*), else TRL's PPOConfig names
    reward_model: str | None = field(
        default=None,
        metadata=_help("ppo: a run directory of stage=rm to score answers (default: the execution reward)"),
    )
    ppo_epochs: int = field(default=4, metadata=_help("ppo: optimisation passes over each rollout"))
    ppo_buffer_size: int = field(
        default=1,
        metadata=_help("ppo: optimizer steps (batches) per pass over a rollout: its size in batches"),
    )
    ppo_whiten_rewards: bool = field(
        default=False, metadata=_help("ppo: scale the per-token rewards to unit variance per rollout")
    )
    kl_coef: float = field(
        default=0.05, metadata=_help("ppo: per-token KL penalty towards the reference (0: no reference)")
    )
    cliprange: float = field(
        default=0.2, metadata=_help("ppo: how far the probability ratio and the value may move per rollout")
    )
    vf_coef: float = field(default=0.1, metadata=_help("ppo: weight of the value loss"))
    gamma: float = field(default=1.0, metadata=_help("ppo: discount factor of GAE"))
    lam: float = field(default=0.95, metadata=_help("ppo: lambda of GAE (bias/variance trade-off)"))
    simpo_gamma: float | None = field(
        default=None, metadata=_help("simpo: margin the chosen answer's reward must win by (TRL default 0.5)")
    )
    cpo_alpha: float | None = field(
        default=None, metadata=_help("simpo: weight of the chosen answer's likelihood (default 0: SimPO)")
    )
    desirable_weight: float | None = field(
        default=None, metadata=_help("kto: loss weight of desirable answers (TRL default 1.0)")
    )
    undesirable_weight: float | None = field(
        default=None, metadata=_help("kto: loss weight of undesirable answers (TRL default 1.0)")
    )

    def execution_reward_weights(self):
        """`reward_weights` as the execution reward's RewardWeights (format, executes, match)."""
        from sqltune.errors import ConfigError
        from sqltune.train.rewards import RewardWeights

        try:
            values = [float(part) for part in str(self.reward_weights).split(",")]
        except ValueError:
            values = []
        if len(values) != 3 or any(not 0 <= value < float("inf") for value in values):
            raise ConfigError(
                f"reward_weights: give three weights >= 0 for format, executes, match (e.g. 1,2,3), "
                f"not {self.reward_weights!r}"
            )
        return RewardWeights(*values)

    @property
    def lora_targets(self) -> list[str]:
        return _names(self.lora_target)

    @property
    def additional_targets(self) -> list[str]:
        return _names(self.additional_target)

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        _check_choice("stage", self.stage, STAGES)
        if not stage_available(self.stage):
            available = ", ".join(name for name in STAGES if stage_available(name))
            raise ConfigError(f"stage={self.stage} is not available yet; available stages: {available}")
        _check_choice("finetuning_type", self.finetuning_type, FINETUNING_TYPES)
        if self.lora_rank < 1:
            raise ConfigError("lora_rank: must be >= 1")
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_rank
        if self.pissa_init and self.loftq_init:
            raise ConfigError("choose one of pissa_init and loftq_init")
        if self.use_llama_pro and self.finetuning_type == "full":
            raise ConfigError("use_llama_pro trains only the expanded blocks: finetuning_type=freeze or lora")
        if self.use_llama_pro and self.freeze_trainable_layers < 1:
            raise ConfigError(
                "use_llama_pro: freeze_trainable_layers is the num_expand of `sqltune expand` (>= 1)"
            )
        if self.use_llama_pro and self.lora_layers is not None:
            raise ConfigError("use_llama_pro chooses the layers itself: leave out lora_layers")
        if self.loss_chunk_size < 1:
            raise ConfigError("loss_chunk_size: must be >= 1")
        if self.train_mm_proj_only and self.finetuning_type != "full":
            raise ConfigError("train_mm_proj_only trains the projector's weights: finetuning_type=full")
        from sqltune.train.methods.optimizers import check_keys

        check_keys(self)  # GaLore, APOLLO, BAdam
        if self.pref_ftx < 0:
            raise ConfigError("pref_ftx: must be >= 0")
        if self.num_generations is not None and self.num_generations < 2:
            raise ConfigError("num_generations: must be >= 2 (GRPO compares completions of one prompt)")
        if self.max_completion_length is not None and self.max_completion_length < 1:
            raise ConfigError("max_completion_length: must be >= 1")
        if self.reward_timeout <= 0:
            raise ConfigError("reward_timeout: must be > 0 seconds")
        self.execution_reward_weights()  # checked here, used by the stages that execute answers
        if self.ppo_epochs < 1 or self.ppo_buffer_size < 1:
            raise ConfigError("ppo_epochs and ppo_buffer_size: must be >= 1")
        if self.cliprange <= 0 or self.vf_coef < 0 or self.kl_coef < 0:
            raise ConfigError("cliprange must be > 0, vf_coef and kl_coef >= 0")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ConfigError("gamma and lam: must be between 0 and 1")
        for name in ("cpo_alpha", "desirable_weight", "undesirable_weight"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0")


# ---- prediction ----------------------------------------------------------------------------------------
INFER_BACKENDS = ("hf", "vllm")
INFER_DTYPES = ("auto", "float32", "bfloat16", "float16")
DECODINGS = ("single", "execution_guided", "agent")
GUIDED_CHOICES = ("first", "vote")
OUTPUT_FORMATS = ("jsonl", "spider")


@dataclass
class GeneratingArguments:
    """How the model writes its answer (`predict`, `ask`, `run`); names follow transformers' generate."""

    max_new_tokens: int = field(default=256, metadata=_help("most tokens to generate per answer"))
    num_beams: int = field(default=1, metadata=_help("beam search width (1 = greedy or sampling)"))
    do_sample: bool = field(default=False, metadata=_help("sample instead of greedy/beam decoding"))
    temperature: float = field(default=0.7, metadata=_help("sampling temperature"))
    top_p: float = field(default=0.95, metadata=_help("sampling: nucleus probability mass"))
    top_k: int = field(default=50, metadata=_help("sampling: keep the k most likely tokens (0 = all)"))
    repetition_penalty: float = field(default=1.0, metadata=_help("penalise repeated tokens (1 = off)"))
    stop_after_statement: bool = field(
        default=True,
        metadata=_help(
            "end an answer once it holds one complete SQL statement (a ';' outside quotes and "
            "parentheses, or a closed code fence): what SQL extraction keeps cannot change after it"
        ),
    )
    decoding: str = field(
        default="single",
        metadata=_help(
            "single (one answer per question), execution_guided (num_candidates answers, "
            "executed and voted on) or agent (the model calls tools on the database, then answers)"
        ),
    )
    num_candidates: int = field(
        default=4,
        metadata=_help("execution_guided: candidates per question (beams, or samples if do_sample)"),
    )
    candidate_timeout: float = field(
        default=2.0, metadata=_help("execution_guided and agent: seconds a candidate query may run")
    )
    guided_choice: str = field(
        default="first",
        metadata=_help(
            "execution_guided: first (the most likely candidate that executes, rows preferred) or "
            "vote (the result most candidates agree on)"
        ),
    )
    max_turns: int = field(
        default=4, metadata=_help("agent: most responses per question (tool calls, then the answer)")
    )

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        _check_choice("decoding", self.decoding, DECODINGS)
        _check_choice("guided_choice", self.guided_choice, GUIDED_CHOICES)
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens: must be >= 1")
        if self.num_beams < 1:
            raise ConfigError("num_beams: must be >= 1")
        if self.num_beams > 1 and self.do_sample:
            raise ConfigError("choose beam search (num_beams > 1) or sampling (do_sample=true), not both")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ConfigError("temperature must be > 0, top_p in (0, 1] and top_k >= 0")
        if self.num_candidates < 1:
            raise ConfigError("num_candidates: must be >= 1")
        if self.candidate_timeout <= 0:
            raise ConfigError("candidate_timeout: must be > 0 seconds")
        if self.max_turns < 1:
            raise ConfigError("max_turns: must be >= 1")
        if self.decoding == "agent" and (self.do_sample or self.num_beams > 1):
            raise ConfigError("decoding=agent decodes greedily: leave out do_sample and num_beams")

    @property
    def candidates(self) -> int:
        """Answers to generate per question."""
        return self.num_candidates if self.decoding == "execution_guided" else 1


@dataclass
class PredictArguments:
    """`sqltune predict`: which model (a run directory) answers which registered dataset, and where to."""

    run_dir: str | None = field(
        default=None,
        metadata=_help("a run directory of `sqltune train` (else the base model of model_name_or_path)"),
    )
    dataset: str | None = field(default=None, metadata=_help("registered dataset to answer (one name)"))
    dataset_dir: str = field(default="data", metadata=_help("folder holding dataset_info.json"))
    output: str | None = field(
        default=None,
        metadata=_help("predictions file (default <run_dir or .>/predictions/<dataset>.jsonl)"),
    )
    format: str = field(
        default="jsonl", metadata=_help("jsonl, or spider: also one SQL per line (<output>.sql)")
    )
    infer_backend: str = field(default="hf", metadata=_help("hf (transformers, CPU or GPU) or vllm (GPU)"))
    infer_dtype: str = field(
        default="auto",
        metadata=_help(f"one of {', '.join(INFER_DTYPES)}; auto: bfloat16 where the hardware runs it fast"),
    )
    batch_size: int = field(default=32, metadata=_help("questions per generate call (hf)"))
    cutoff_len: int | None = field(
        default=None,
        metadata=_help("max prompt + answer tokens (default: the run's cutoff_len, else 1024)"),
    )
    max_samples: int | None = field(default=None, metadata=_help("answer only the first N questions"))
    overwrite: bool = field(
        default=False, metadata=_help("start the output over instead of resuming where it stopped")
    )
    seed: int = field(default=42, metadata=_help("random seed (sampling)"))
    tensor_parallel_size: int = field(default=1, metadata=_help("vllm: GPUs to split the model over"))
    gpu_memory_utilization: float = field(
        default=0.9, metadata=_help("vllm: fraction of GPU memory for weights and KV cache")
    )
    db_url: str | None = field(
        default=None,
        metadata=_help(
            "execution_guided: run the candidates on a server instead of the dataset's SQLite files, "
            "e.g. postgresql://user@host:5432/{db_id} ({db_id} names each question's database; the "
            "schema in the prompt still comes from the dataset)"
        ),
    )

    def __post_init__(self) -> None:
        from sqltune.db.urls import is_url
        from sqltune.errors import ConfigError

        if self.db_url is not None and not is_url(self.db_url):
            raise ConfigError(f"db_url: '{self.db_url}' is not a URL (postgresql://user@host:5432/{{db_id}})")
        _check_choice("infer_backend", self.infer_backend, INFER_BACKENDS)
        _check_choice("infer_dtype", self.infer_dtype, INFER_DTYPES)
        _check_choice("format", self.format, OUTPUT_FORMATS)
        if self.batch_size < 1 or self.tensor_parallel_size < 1:
            raise ConfigError("batch_size and tensor_parallel_size: must be >= 1")
        if self.format == "spider" and str(self.output or "").lower().endswith(".sql"):
            raise ConfigError("output: format=spider writes SQL lines to <output>.sql; name this one .jsonl")
        if self.cutoff_len is not None and self.cutoff_len < 8:
            raise ConfigError("cutoff_len: must be >= 8")


@dataclass
class ExportArguments:
    """`sqltune export`: a run directory merged into a plain transformers model."""

    run_dir: str | None = field(
        default=None, metadata=_help("the run directory of `sqltune train` to export")
    )
    export_dir: str | None = field(default=None, metadata=_help("folder for the merged model"))
    export_size: str = field(
        default="5", metadata=_help("largest safetensors shard, in GB (or with a unit: 500MB)")
    )
    export_dtype: str = field(
        default="auto", metadata=_help(f"one of {', '.join(TORCH_DTYPES)}; auto: the base model's dtype")
    )
    base_model: str | None = field(
        default=None, metadata=_help("merge into this copy of the base (e.g. 16-bit) instead of the run's")
    )
    overwrite: bool = field(default=False, metadata=_help("replace an existing export_dir"))
    export_quantization_bit: int | None = field(
        default=None,
        metadata=_help("4 or 8: GPTQ-quantise the merged model (gptqmodel; see docs/training.md)"),
    )
    export_quantization_dataset: str | None = field(
        default=None, metadata=_help("GPTQ: a registered dataset whose prompts calibrate the quantisation")
    )
    dataset_dir: str = field(
        default="data", metadata=_help("GPTQ: folder holding export_quantization_dataset's dataset_info.json")
    )
    export_quantization_nsamples: int = field(
        default=128, metadata=_help("GPTQ: calibration prompts taken from export_quantization_dataset")
    )
    export_quantization_maxlen: int = field(
        default=1024, metadata=_help("GPTQ: most tokens of a calibration prompt")
    )

    @property
    def max_shard_size(self) -> str:
        size = str(self.export_size).strip()
        return f"{size}GB" if size.isdigit() else size

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        _check_choice("export_dtype", self.export_dtype, TORCH_DTYPES)
        _check_choice("export_quantization_bit", self.export_quantization_bit, (4, 8))
        if self.export_quantization_bit and not self.export_quantization_dataset:
            raise ConfigError(
                "export_quantization_bit: give export_quantization_dataset=<a registered dataset> to calibrate"
            )
        if self.export_quantization_nsamples < 1 or self.export_quantization_maxlen < 8:
            raise ConfigError("export_quantization_nsamples must be >= 1 and export_quantization_maxlen >= 8")


@dataclass
class ExpandArguments:
    """`sqltune expand`: LLaMA Pro block expansion, a model with zero-initialised copies of its layers."""

    model_name_or_path: str = field(
        default="smollm2-135m",
        metadata=_help("model directory, a .gguf file, or 'smollm2-135m' (the embedded default)"),
    )
    num_expand: int | None = field(
        default=None,
        metadata=_help("layers to insert, one after every L/num_expand of the L layers (must divide L)"),
    )
    output_dir: str | None = field(default=None, metadata=_help("folder for the expanded model"))
    trust_remote_code: bool = field(
        default=False, metadata=_help("allow model code shipped with the checkpoint")
    )
    overwrite: bool = field(default=False, metadata=_help("replace an existing output_dir"))

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        if self.num_expand is not None and self.num_expand < 1:
            raise ConfigError("num_expand: must be >= 1")


@dataclass
class AskArguments:
    """`sqltune ask`: one question about a live database, answered with SQL and its rows."""

    db: str | None = field(default=None, metadata=_help("a SQLite file or a SQLAlchemy URL"))
    question: str | None = field(default=None, metadata=_help("the question (also the bare argument)"))
    run_dir: str | None = field(
        default=None, metadata=_help("a run directory of `sqltune train` (else model_name_or_path)")
    )
    max_rows: int = field(default=20, metadata=_help("rows to fetch and show"))
    timeout: float = field(default=10.0, metadata=_help("seconds the query may run"))
    cutoff_len: int | None = field(
        default=None, metadata=_help("max prompt + answer tokens (default: the run's, else 1024)")
    )
    infer_dtype: str = field(default="auto", metadata=_help(f"one of {', '.join(INFER_DTYPES)}"))
    agent: bool = field(
        default=False,
        metadata=_help("let the model call tools on the database before it answers (decoding=agent)"),
    )

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        _check_choice("infer_dtype", self.infer_dtype, INFER_DTYPES)
        if self.max_rows < 1 or self.timeout <= 0:
            raise ConfigError("max_rows must be >= 1 and timeout > 0")


@dataclass
class ServeArguments:
    """`sqltune serve`: an OpenAI-compatible API and Text-to-SQL endpoints over one model held open."""

    run_dir: str | None = field(
        default=None,
        metadata=_help("a run directory of `sqltune train` (else model_name_or_path: the embedded default)"),
    )
    host: str = field(
        default="127.0.0.1", metadata=_help("address to listen on (0.0.0.0: every interface; use api_key)")
    )
    port: int = field(default=8000, metadata=_help("TCP port (0: any free port)"))
    databases: list[str] | None = field(
        default=None,
        metadata=_help(
            "what /v1/sql may query, comma-separated (or a YAML list): SQLite files, folders of "
            "<db>/<db>.sqlite, SQLAlchemy URLs, or demo (the embedded demo databases)"
        ),
    )
    api_key: str | None = field(
        default=None,
        metadata=_help("require 'Authorization: Bearer <key>' (default: $SQLTUNE_API_KEY, else no auth)"),
    )
    served_model_name: str | None = field(
        default=None, metadata=_help("the model id /v1/models shows (default: the run's or model's name)")
    )
    infer_backend: str = field(default="hf", metadata=_help("hf (transformers, CPU or GPU) or vllm (GPU)"))
    infer_dtype: str = field(default="auto", metadata=_help(f"one of {', '.join(INFER_DTYPES)}"))
    batch_size: int = field(default=16, metadata=_help("most requests decoded together in one generate call"))
    max_wait_ms: float = field(
        default=20.0, metadata=_help("how long the first request of a batch waits for others to join it")
    )
    max_queue: int = field(default=256, metadata=_help("requests waiting at most; more are refused (503)"))
    max_prompt_tokens: int = field(
        default=2048, metadata=_help("longest prompt accepted, in tokens (longer: a 400 error)")
    )
    max_choices: int = field(default=8, metadata=_help("most completions per chat request (n)"))
    cutoff_len: int | None = field(
        default=None, metadata=_help("/v1/sql: max prompt + answer tokens (default: the run's, else 1024)")
    )
    timeout: float = field(default=10.0, metadata=_help("/v1/sql: seconds a query may run"))
    max_rows: int = field(default=100, metadata=_help("/v1/sql: most rows returned per query"))
    seed: int = field(default=42, metadata=_help("random seed of sampling"))

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        _check_choice("infer_backend", self.infer_backend, INFER_BACKENDS)
        _check_choice("infer_dtype", self.infer_dtype, INFER_DTYPES)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: must be between 0 and 65535, not {self.port}")
        for name in ("batch_size", "max_queue", "max_prompt_tokens", "max_choices", "max_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")
        if self.max_wait_ms < 0 or self.timeout <= 0:
            raise ConfigError("max_wait_ms must be >= 0 and timeout > 0")
        if self.cutoff_len is not None and self.cutoff_len < 8:
            raise ConfigError("cutoff_len: must be >= 8")


@dataclass
class WebuiArguments:
    """`sqltune webui`: a browser page to ask databases, train, evaluate and export (Gradio)."""

    host: str = field(
        default="127.0.0.1",
        metadata=_help("address to listen on (the page starts trainings and reads databases: keep it local)"),
    )
    port: int = field(default=7860, metadata=_help("TCP port (0: any free port)"))
    run_dir: str | None = field(
        default=None,
        metadata=_help(
            "the model the Ask tab starts with (default: the newest fine-tuned run of `sqltune run`, "
            "else the embedded base model)"
        ),
    )
    databases: list[str] | None = field(
        default=None,
        metadata=_help(
            "offered in the Ask tab besides the demo databases, comma-separated (or a YAML list): "
            "SQLite files, folders of <db>/<db>.sqlite, SQLAlchemy URLs"
        ),
    )
    data_dir: str = field(
        default="data",
        metadata=_help(
            "folder of the registered datasets (dataset_info.json); the demo databases and uploaded "
            "SQLite files are kept under it"
        ),
    )
    feedback: str = field(
        default="data/feedback.jsonl",
        metadata=_help("jsonl the correct/wrong buttons append to (sqltune data source=jsonl reads it)"),
    )
    timeout: float = field(default=10.0, metadata=_help("seconds a query may run"))
    max_rows: int = field(default=200, metadata=_help("most rows fetched and shown per query"))

    def __post_init__(self) -> None:
        from sqltune.errors import ConfigError

        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: must be between 0 and 65535, not {self.port}")
        if self.max_rows < 1 or self.timeout <= 0:
            raise ConfigError("max_rows must be >= 1 and timeout > 0")


RUN_SOURCES = ("demo", "spider", "synth")


@dataclass
class RunArguments:
    """`sqltune run`: the whole flow (data -> train -> predict -> evaluate) in one command.

    The run directory is `output_dir`; model, fine-tuning, training, prompt and generation options
    are those of `sqltune data`, `train` and `predict`.
    """

    source: str = field(default="demo", metadata=_help(f"data: one of {', '.join(RUN_SOURCES)}"))
    spider_dir: str | None = field(default=None, metadata=_help("source=spider: the Spider folder"))
    db: str | None = field(
        default=None, metadata=_help("source=synth: your SQLite database, to synthesize questions from")
    )
    synth_pairs: int = field(default=300, metadata=_help("source=synth: pairs to synthesize from db"))
    holdout: float = field(
        default=0.2,
        metadata=_help("source=synth: pairs held out to score, a fraction (< 1) or a number (>= 1)"),
    )
    train_limit: int | None = field(default=None, metadata=_help("train on the first N examples"))
    eval_limit: int | None = field(default=None, metadata=_help("evaluate on the first N dev questions"))
    cutoff_len: int = field(default=1024, metadata=_help("max prompt + answer tokens (train and predict)"))
    infer_batch_size: int = field(default=32, metadata=_help("questions decoded together when predicting"))
    infer_dtype: str = field(default="auto", metadata=_help(f"one of {', '.join(INFER_DTYPES)}"))
    before: bool = field(default=True, metadata=_help("also score the base model before fine-tuning"))
    eval_timeout: float = field(default=30.0, metadata=_help("seconds a query may run when scoring"))
    db_url: str | None = field(
        default=None,
        metadata=_help(
            "dialect=postgres|mysql: the server to run on, {db_id} where the database name goes "
            "(postgresql://user@host:5432/{db_id}): the run loads its databases there, checks the "
            "gold SQL, scores EX (no EM) and runs the later stages' answers there"
        ),
    )
    stages: list | None = field(
        default=None,
        metadata=_help(
            "later training stages after SFT, each scored too: names (stages=dpo,grpo) or, in a "
            "recipe, a list of mappings (sqltune.pipeline.stages)"
        ),
    )

    def __post_init__(self) -> None:
        from sqltune.db.urls import is_url
        from sqltune.errors import ConfigError

        _check_choice("source", self.source, RUN_SOURCES)
        _check_choice("infer_dtype", self.infer_dtype, INFER_DTYPES)
        if self.source == "spider" and not self.spider_dir:
            raise ConfigError("source=spider needs spider_dir=<the Spider folder>")
        if self.source == "synth" and not self.db:
            raise ConfigError("source=synth needs db=<your SQLite file>, e.g. db=shop.sqlite")
        check_synth_sizes(self.synth_pairs, self.holdout)
        if self.cutoff_len < 8 or self.infer_batch_size < 1:
            raise ConfigError("cutoff_len must be >= 8 and infer_batch_size >= 1")
        if self.db_url is not None and not is_url(self.db_url):
            raise ConfigError(f"db_url: '{self.db_url}' is not a URL (postgresql://user@host:5432/{{db_id}})")
