"""`stage=grpo`: reinforcement learning from execution feedback (Group Relative Policy Optimisation).

For every question the model samples `num_generations` answers; each is executed against the
question's database and scored by the execution reward (`sqltune.train.rewards`: format, executes,
same result as the gold SQL). GRPO then raises the likelihood of the answers that scored above their
group's mean and lowers the others, with no value model and, at TRL's default `beta=0`, no reference
model either. The trainer is TRL's `GRPOTrainer`.

Data: an ordinary SFT dataset of `sqltune data` (`demo_train`, `spider_train`...): each record's
`db_id` names the database, its output is the gold SQL, and the dataset's `db_dir` holds
`<db_id>/<db_id>.sqlite`. Prompts are built and tokenised with the run's template exactly as
`predict` builds them, shortened (schema first, never a table the gold uses) to leave
`max_completion_length` tokens of `cutoff_len` for the answer.
"""

from __future__ import annotations

import dataclasses
import logging

from sqltune.args import DataArguments, FinetuningArguments, ModelArguments
from sqltune.data.records import dataset_entry
from sqltune.errors import ConfigError, DataError
from sqltune.models.encoding import encode_prompt
from sqltune.models.templates import Template
from sqltune.train.data import Sample, fit_sample, prompt_settings, read_samples
from sqltune.train.rewards import ExecutionReward, reward_databases
from sqltune.train.stage import (
    SavesPolicyOnly,
    StageRun,
    last_logged,
    load_policy,
    mixed_precision,
    reference_description,
    trl_config,
)

logger = logging.getLogger("sqltune")

GRPO_SIGNALS = ("reward", "reward_std", "frac_reward_zero_std", "kl", "completions/mean_length")


def reward_target(data_args, stage: str, db_url: str | None) -> dict:
    """Where the execution reward runs the datasets' answers (`rewards.reward_databases`)."""
    entries = {name: dataset_entry(data_args.dataset_dir, name) for name in data_args.dataset_names}
    return reward_databases(entries, f"stage={stage}", db_url)


def fit_prompt_ids(sample: Sample, template: Template, tokenizer, budget: int) -> list[int] | None:
    """The sample's prompt ids within `budget` tokens (schema shortened if it can be), else None."""
    ids = encode_prompt(sample.prompt, template, tokenizer, sample.system)
    if len(ids) <= budget:
        return ids
    fitted = fit_sample(sample, template, tokenizer, budget)
    return fitted.prompt_ids if fitted else None


def build(
    model_args: ModelArguments,
    data_args: DataArguments,
    finetuning_args: FinetuningArguments,
    training_args,
    template: Template,
    tokenizer,
) -> StageRun:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    class TokenizedGRPOTrainer(SavesPolicyOnly, GRPOTrainer):
        """GRPOTrainer whose prompts are the ids sqltune built with the run's template (the dataset's
        `prompt` column is their text, the key to them)."""

        def __init__(self, *args, prompt_ids: dict[str, list[int]], **kwargs) -> None:
            self.sqltune_prompt_ids = prompt_ids
            super().__init__(*args, **kwargs)

        def _tokenize_prompts(self, prompts: list):
            return [self.sqltune_prompt_ids[p] for p in prompts], None, {}

        def _generate_single_turn(self, *args, **kwargs):
            # TRL generates outside autocast; the model mixes half-precision frozen weights with
            # float32 trainable ones, which meet only under autocast (as in every training forward)
            with self.accelerator.autocast():
                return super()._generate_single_turn(*args, **kwargs)

    names = data_args.dataset_names
    databases = reward_target(data_args, "grpo", finetuning_args.reward_db_url)
    config = trl_config(
        GRPOConfig,
        training_args,
        beta=finetuning_args.beta,
        loss_type=finetuning_args.loss_type,
        num_generations=finetuning_args.num_generations,
        max_completion_length=finetuning_args.max_completion_length,
    )
    budget = data_args.cutoff_len - config.max_completion_length
    if budget < 8:
        raise ConfigError(
            f"cutoff_len={data_args.cutoff_len} leaves no room for a prompt beside "
            f"max_completion_length={config.max_completion_length}"
        )
    rows: dict[str, list] = {"prompt": [], "db_id": [], "gold_sql": []}
    prompt_ids: dict[str, list[int]] = {}
    data_stats = {}
    reward = ExecutionReward(
        **databases,
        timeout=finetuning_args.reward_timeout,
        weights=finetuning_args.execution_reward_weights(),
    )
    missing: set[str] = set()
    for name in names:
        samples = read_samples(data_args.dataset_dir, name, data_args.max_samples)
        stats = {"samples": len(samples), "kept": 0, "dropped_too_long": 0, "dropped_no_database": 0}
        for line, sample in enumerate(samples, 1):
            if not sample.db_id:
                raise ConfigError(
                    f"stage=grpo needs each question's db_id: dataset '{name}' record {line} has none"
                )
            if sample.db_id in missing or not reward.has_database(sample.db_id):
                missing.add(sample.db_id)  # e.g. Spider's 3 databases that ship without a file
                stats["dropped_no_database"] += 1
                continue
            ids = fit_prompt_ids(sample, template, tokenizer, budget)
            if ids is None:
                stats["dropped_too_long"] += 1
                continue
            text = tokenizer.decode(ids)
            prompt_ids.setdefault(text, ids)
            rows["prompt"].append(text)
            rows["db_id"].append(sample.db_id)
            rows["gold_sql"].append(sample.response)
            stats["kept"] += 1
        data_stats[name] = stats
    if missing:
        dropped = sum(stats["dropped_no_database"] for stats in data_stats.values())
        logger.warning(
            "stage=grpo: %d question(s) left out, no database in %s for: %s",
            dropped,
            next(iter(reward.where().values())),
            ", ".join(sorted(missing)),
        )
    if not rows["prompt"]:
        if missing and not any(stats["dropped_too_long"] for stats in data_stats.values()):
            reward.database(sorted(missing)[0])  # none is there: the one-line error of the reward
        raise DataError(f"no question of {', '.join(names)} fits cutoff_len={data_args.cutoff_len}")
    model, peft_config = load_policy(model_args, finetuning_args, training_args, trl=True)
    trainer = TokenizedGRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_dict(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        prompt_ids=prompt_ids,
    )
    mixed_precision(trainer, training_args)
    settings = {
        "beta": config.beta,
        "loss_type": config.loss_type,
        "num_generations": config.num_generations,
        "max_completion_length": config.max_completion_length,
        "reward": "execution",
        "reward_weights": dataclasses.asdict(reward.weights),
        "reward_timeout_s": finetuning_args.reward_timeout,
        **reward.where(),
        "reference": reference_description(trainer) if config.beta else "none (beta=0)",
    }

    def signals() -> dict:
        found = last_logged(trainer.state.log_history, GRPO_SIGNALS)
        found["execution_outcomes"] = dict(reward.outcomes)
        return found

    return StageRun(
        trainer,
        len(rows["prompt"]),
        data_stats,
        prompt_settings(data_args.dataset_dir, names),
        settings,
        signals=signals,
    )
