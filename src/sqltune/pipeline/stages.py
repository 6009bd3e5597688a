"""`sqltune run` with `stages:`: more training stages after SFT, each scored on the same dev questions.

    stages:                       # in a recipe (configs/quickstart_rl.yaml)
      - stage: dpo                # execution pairs from the SFT model, then DPO from it
        pairs: {num_candidates: 8}
        learning_rate: 5.0e-5
        max_steps: 20
      - stage: grpo               # GRPO from the SFT model on the training questions
        num_generations: 8
        per_device_train_batch_size: 16

    sqltune run configs/quickstart.yaml stages=dpo,grpo     # the same, each with its recipe defaults

Each entry is one more training run in `<output_dir>/stages/<name>` (`name` defaults to the stage).
It starts from the SFT run of the pipeline, or from an earlier entry (`from: <name>`), continuing its
LoRA adapter (or, after freeze/full fine-tuning, training the saved model further). Its keys are the
keys of `sqltune train`: the entry's own, then the stage's STAGE_DEFAULTS (a DPO learning rate and
step count are not SFT's), then the pipeline's options for everything else.

Data: sft, grpo and ppo train on the pipeline's training questions (the reward executes answers
against their databases); pt on `sqltune data corpus` of the training databases (DDL, sample rows,
the training questions with their SQL; never the held-out databases). dpo, kto, orpo, simpo and rm need pairs: unless the entry names a registered
`dataset`, `sqltune data pairs` samples `pairs.num_candidates` answers per training question from the
starting model, executes them and writes `data/<name>_pairs` (and `<name>_pairs_kto` for kto).

On a server (`sqltune run dialect=postgres|mysql db_url=...`) the training questions' SQL is the
server's, so the answers run there too: grpo and ppo entries get `reward_db_url` (unless the entry
gives its own) and execution pairs `db_url`, the run's URL.

A ppo entry's `reward_model` may name an earlier rm entry (`reward_model: rm`), which then scores
its answers; without one, ppo uses the execution reward like grpo. Every entry but rm (a reward
model writes no SQL; its accuracy and margin are reported) is scored like "after" (`predictions/<name>.jsonl`, `eval/<name>.json`) and reported
under `stages` in report.json. A finished entry is reused on a rerun, as the SFT run is.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqltune.args import STAGES, DataArguments, FinetuningArguments, ModelArguments, PairsArguments
from sqltune.config import coerce, field_map, field_type
from sqltune.errors import ConfigError
from sqltune.runcard import RUN_CARD, RunCard

# stages that train on the recipe's own training questions; the pair stages get execution pairs
QUESTION_STAGES = ("sft", "grpo", "ppo")
# stages whose execution reward runs the model's answers (on the run's server, when it has one)
REWARDED_STAGES = ("grpo", "ppo")
RESERVED = ("before", "after", "sft")

# what an entry trains with when neither it nor the pipeline's own options say otherwise:
# the later stages move a model that already answers, so far smaller steps than SFT's
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    # dpo as measured on the demo data (docs/benchmarks.md "Later stages"): the chosen answers' own
    # loss beside the preference loss (pref_ftx) made the difference between -0.04 and +0.06 EX
    "dpo": {"learning_rate": 1e-4, "max_steps": 24, "beta": 0.1, "pref_ftx": 1.0},
    "kto": {"learning_rate": 5e-5, "max_steps": 20, "beta": 0.1},
    "orpo": {"learning_rate": 5e-5, "max_steps": 20},
    "simpo": {"learning_rate": 5e-5, "max_steps": 20},
    "rm": {"learning_rate": 1e-4, "max_steps": 20},
    "grpo": {
        "learning_rate": 1e-4,
        "max_steps": 30,
        "num_generations": 8,
        "per_device_train_batch_size": 16,
        "max_completion_length": 64,
        # correctness first: 0.40 EX on the demo data against 0.31 with SQL-R1's 1,2,3
        "reward_weights": "0.3,0.3,3",
    },
    "ppo": {"learning_rate": 5e-5, "max_steps": 20, "max_completion_length": 64},
}
# `sqltune data pairs` keys that the pipeline sets itself
PAIRS_SET_BY_RUN = ("run_dir", "dataset", "dataset_dir", "output_dir", "dataset_name", "overwrite", "db_url")
# keys of an entry that are the pipeline's own, not `sqltune train` options
ENTRY_KEYS = ("stage", "name", "from", "dataset", "pairs")


@dataclass
class StagePlan:
    name: str
    stage: str
    start: str  # "sft" or the name of an earlier entry
    dataset: str | None
    pairs: dict[str, Any]
    finetuning: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    reward_entry: str | None = None  # ppo: the rm entry of the same run that scores its answers

    @property
    def scored(self) -> bool:
        """Whether the entry's model answers the dev questions (a reward model writes no SQL)."""
        return self.stage != "rm"


def plan_stages(entries: list | None, training_group: type) -> list[StagePlan]:
    """Check the `stages` list (errors name the entry and the key) and plan each entry."""
    plans: list[StagePlan] = []
    fields = field_map((FinetuningArguments, training_group))
    pair_fields = field_map((PairsArguments,))
    for number, entry in enumerate(entries or []):
        where = f"stages[{number}]"
        if isinstance(entry, str):
            entry = {"stage": entry}
        if not isinstance(entry, dict) or "stage" not in entry:
            raise ConfigError(f"{where}: give a stage name, or a mapping with 'stage: <name>' and its keys")
        stage = str(entry["stage"])
        if stage not in STAGES:
            raise ConfigError(f"{where}.stage: unknown '{stage}', choose one of {', '.join(STAGES)}")
        name = str(entry.get("name", stage))
        if name in RESERVED or any(plan.name == name for plan in plans) or not name.isidentifier():
            raise ConfigError(
                f"{where}.name: '{name}' is taken or not a plain name; give each entry its own name: ..."
            )
        start = str(entry.get("from", "sft"))
        if start != "sft" and start not in {plan.name for plan in plans}:
            raise ConfigError(f"{where}.from: '{start}' is neither sft nor an earlier entry")
        if any(plan.name == start and plan.stage == "rm" for plan in plans):
            raise ConfigError(f"{where}.from: '{start}' is a reward model; give it as reward_model: {start}")
        scorer = entry.get("reward_model")
        if scorer is not None and stage != "ppo":
            raise ConfigError(f"{where}.reward_model: only a ppo entry takes a reward model")
        pairs = entry.get("pairs") or {}
        if not isinstance(pairs, dict):
            raise ConfigError(f"{where}.pairs: give a mapping of `sqltune data pairs` keys")
        for key, value in pairs.items():
            if key not in pair_fields or key in PAIRS_SET_BY_RUN:
                raise ConfigError(f"{where}.pairs.{key}: not a key the pairs of a stage take")
            pairs[key] = coerce(value, field_type(*pair_fields[key]), f"{where}.pairs.{key}")
        plan = StagePlan(name, stage, start, entry.get("dataset"), dict(pairs))
        options = {**STAGE_DEFAULTS.get(stage, {}), **{k: v for k, v in entry.items() if k not in ENTRY_KEYS}}
        for key, value in options.items():
            if key not in fields or key in ("stage", "output_dir"):
                raise ConfigError(f"{where}.{key}: not a key a stage entry takes")
            group = fields[key][0]
            target = plan.finetuning if group is FinetuningArguments else plan.training
            target[key] = coerce(value, field_type(*fields[key]), f"{where}.{key}")
        plan.reward_entry = next((p.name for p in plans if p.name == scorer and p.stage == "rm"), None)
        if scorer is not None and plan.reward_entry is None and str(scorer) in {p.name for p in plans}:
            raise ConfigError(f"{where}.reward_model: '{scorer}' is not an rm entry")
        plans.append(plan)
    return plans


def stage_arguments(
    plan: StagePlan,
    model_args: ModelArguments,
    finetuning: FinetuningArguments,
    training,
    start_dir: Path,
    stage_dir: Path,
    db_url: str | None = None,
) -> tuple[ModelArguments, FinetuningArguments, Any]:
    """The model, fine-tuning and training arguments of one entry; `db_url`: the run's server, where
    a grpo or ppo entry's execution reward runs the answers."""
    card = RunCard.load(start_dir)
    if card.finetuning_type == "lora":
        model = dataclasses.replace(model_args, adapter_name_or_path=str(start_dir))
    else:  # a whole model: train it further
        model = dataclasses.replace(model_args, model_name_or_path=str(start_dir), adapter_name_or_path=None)
    options = dict(plan.finetuning)
    if db_url and plan.stage in REWARDED_STAGES:
        options.setdefault("reward_db_url", db_url)
    if plan.reward_entry:  # an rm entry of this run scores the ppo entry's answers
        options["reward_model"] = str(stage_dir.parent / plan.reward_entry)
    tuning = dataclasses.replace(finetuning, stage=plan.stage, **options)
    options = plan.training
    requested = getattr(training, "bf16_requested", None)
    # no finished run is there (train_stage reuses one): what an interrupted attempt left is replaced
    trained = dataclasses.replace(training, output_dir=str(stage_dir), overwrite_output_dir=True, **options)
    if requested is not None:
        trained.bf16_requested = requested
    return model, tuning, trained


def stage_dataset(
    plan: StagePlan, start_dir: Path, data_dir: Path, train_name: str, seed: int, run, max_new_tokens: int
) -> str:
    """The registered dataset an entry trains on, building execution pairs when it needs them."""
    if plan.dataset:
        return str(plan.dataset)
    if plan.stage in QUESTION_STAGES:
        return train_name
    if plan.stage == "pt":
        return training_corpus(plan, data_dir, train_name)
    from sqltune.data.pairs import build_pairs

    name = f"{plan.name}_pairs"
    options = {"seed": seed, "max_new_tokens": max_new_tokens, "infer_dtype": run.infer_dtype, **plan.pairs}
    options["db_url"] = run.db_url  # the gold SQL is the server's there: the answers run there too
    args = PairsArguments(
        run_dir=str(start_dir),
        dataset=train_name,
        dataset_dir=str(data_dir),
        output_dir=str(data_dir),
        dataset_name=name,
        **options,
    )
    counts = build_pairs(args)
    print(f"{plan.name}: execution pairs from {start_dir}: {counts}", file=sys.stderr)
    return f"{name}_kto" if plan.stage == "kto" else name


def training_corpus(plan: StagePlan, data_dir: Path, train_name: str) -> str:
    """`sqltune data corpus` of the training questions' databases (never the held-out ones): their
    DDL, sample rows, and the training questions with their SQL."""
    from sqltune.args import CorpusArguments
    from sqltune.data.corpus import run_corpus
    from sqltune.data.records import load_dataset

    train = load_dataset(data_dir, train_name)
    name = f"{plan.name}_corpus"
    run_corpus(
        CorpusArguments(
            db_dir=train.entry["sqltune"]["db_dir"],
            databases=",".join(sorted({e.db_id for e in train.examples})),
            questions=str(data_dir / train.entry["sqltune"]["examples"]),
            output_dir=str(data_dir),
            dataset_name=name,
        )
    )
    return name


def train_stage(
    plan: StagePlan,
    model_args: ModelArguments,
    finetuning: FinetuningArguments,
    training,
    run,
    run_dir: Path,
    train_name: str,
    max_new_tokens: int,
) -> tuple[Path, bool]:
    """Train one entry, or reuse its finished run; returns (its run dir, trained now)."""
    from sqltune.train.command import run_train

    stage_dir = run_dir / "stages" / plan.name
    start_dir = run_dir if plan.start == "sft" else run_dir / "stages" / plan.start
    if (stage_dir / RUN_CARD).is_file() and not training.overwrite_output_dir:
        print(f"reusing the trained stage in {stage_dir}", file=sys.stderr)
        return stage_dir, False
    data_dir = run_dir / "data"
    dataset = stage_dataset(plan, start_dir, data_dir, train_name, training.seed, run, max_new_tokens)
    model, tuning, trained = stage_arguments(
        plan, model_args, finetuning, training, start_dir, stage_dir, run.db_url
    )
    data_args = DataArguments(dataset=dataset, dataset_dir=str(data_dir), cutoff_len=run.cutoff_len)
    run_train(model, data_args, tuning, trained)
    return stage_dir, True
