"""`stage=ppo`: reinforcement learning with Proximal Policy Optimisation (classic RLHF, token level).

For every question the model (the policy) samples one answer, and the answer gets a score: from
the execution reward (`sqltune.train.rewards`: its SQL runs against the question's database and
its result is compared with the gold query's), or from a reward model trained with `stage=rm`
(`reward_model=<rm run>`). PPO then makes the tokens that did better than the value head expected
more likely, a little at a time:

1. Rollout (`PPOTrainer.make_rollout`, no gradients): sample answers with `model.generate` at
   temperature 1 with no top-k/top-p, so the sampled tokens follow the policy's own probabilities;
   compute each answer token's log-probability under the policy and under the reference model,
   the value head's estimate of the return before each token, and the answer's score.
2. Rewards (`compute_rewards`): every token pays `kl_coef * (logp - logp_ref)` for leaving the
   reference; the answer's last token also receives the score (`ppo_whiten_rewards` scales the
   rewards of a rollout to unit variance).
3. Advantages (`gae`): generalised advantage estimation with `gamma` and `lam`; the value targets
   (returns) are advantages plus values. Advantages are whitened over the rollout.
4. Updates: `ppo_epochs` passes over the rollout in shuffled batches, each batch an optimizer
   step on the clipped policy loss (`policy_loss`) plus `vf_coef` times the clipped value loss
   (`value_loss`); `cliprange` bounds both.

The quantities of steps 2 to 4 and the functions that compute them are `sqltune.train.ppo_math`.

The reference is the model the stage starts from, without a second copy of the weights for LoRA:
a new adapter's reference is the base model with the adapter disabled; continuing an adapter
(`adapter_name_or_path=<sft run>`), it is a frozen copy of the starting adapter, loaded beside it
as adapter "ref" and not saved with the run. freeze/full runs keep a frozen copy of the starting
model. With `kl_coef=0` there is no reference at all.

The value head is one linear layer on the policy's last hidden state; the trunk is shared, so the
value loss trains the adapter (or layers) too. It is no part of the policy: the run directory and
every checkpoint keep it in `value_head.safetensors` (resuming continues it), and predict and
export never see it.

Why our own code: TRL 1.x removed its PPOTrainer together with the value-head model classes, and
the maintained PPO libraries do not run on this stack: OpenRLHF 0.11 pins transformers 5.15,
DeepSpeed, flash-attn and Ray; verl 0.9 pins transformers < 5.11 and Ray; both expect GPUs. PPO
itself is small: here it is transformers' Trainer with a rollout step, and the math is four small
functions (`sqltune.train.ppo_math`), tested against numbers worked out by hand
(`tests/train/test_ppo.py`).

How it fits the Trainer: every optimizer step trains on one batch of a rollout. A rollout holds
`per_device_train_batch_size x gradient_accumulation_steps x ppo_buffer_size` questions, and the
dataloader hands them out once for every micro-batch trained on them (`RolloutSampler`): the
first call samples the rollout, the others take their share of it. `max_steps`, logging,
`save_steps`, checkpoints and resuming are therefore the Trainer's own. A rollout gives
`ppo_epochs x ppo_buffer_size` optimizer steps; resuming in the middle of one samples it again.
One process only (no DDP or DeepSpeed).

Data: as for `stage=grpo`, an SFT dataset of `sqltune data` (each record's `db_id`, its output as
the gold SQL, the dataset's `db_dir`); with `reward_model`, any SFT dataset (only the prompts are
used). Prompts are built with the run's template exactly as `predict` builds them, shortened
(schema first) to leave `max_completion_length` tokens of `cutoff_len` for the answer.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from sqltune.args import DataArguments, FinetuningArguments, ModelArguments
from sqltune.errors import ConfigError, DataError
from sqltune.files import atomic_path
from sqltune.models.templates import Template
from sqltune.train.data import prompt_settings, read_samples
from sqltune.train.grpo import fit_prompt_ids, reward_target
from sqltune.train.ppo_math import (
    ValueHead,
    compute_rewards,
    gae,
    left_pad,
    masked_mean,
    masked_whiten,
    pack_sequences,
    policy_loss,
    token_entropy,
    token_logprobs,
    value_loss,
)
from sqltune.train.stage import (
    SavesPolicyOnly,
    StageRun,
    half_precision,
    last_logged,
    load_policy,
    reference_description,
)

PPO_SIGNALS = (
    "reward",
    "kl",
    "policy_loss",
    "value_loss",
    "clip_fraction",
    "approx_kl",
    "entropy",
    "completion_length",
)
VALUE_HEAD_FILE = "value_head.safetensors"
DEFAULT_COMPLETION_LENGTH = 256


# ---- the value head's file, the rollouts and the trainer ----------------------------------------------


def until_stop(tokens: list[int], stop_ids: list[int]) -> list[int]:
    """A generated answer up to and including its first stop token (all of it when none came)."""
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: position + 1]
    return tokens


def save_value_head(head: ValueHead, folder: str | Path) -> None:
    """`head` into `folder`'s `value_head.safetensors` (written atomically)."""
    from safetensors.torch import save_file

    state = {name: value.detach().cpu().contiguous() for name, value in head.state_dict().items()}
    with atomic_path(Path(folder) / VALUE_HEAD_FILE) as tmp:
        save_file(state, str(tmp))


def load_value_head(head: ValueHead, folder: str | Path) -> None:
    """`head`'s weights from `folder`'s `value_head.safetensors`."""
    from safetensors.torch import load_file

    head.load_state_dict(load_file(str(Path(folder) / VALUE_HEAD_FILE)))


class RolloutSampler(torch.utils.data.Sampler):
    """The questions, shuffled per epoch (seeded), in groups of `rollout_size`; each group comes
    `repeats` times in a row (one per micro-batch trained on its rollout). A last group smaller than
    `rollout_size` is left for the next epoch's shuffle."""

    def __init__(self, size: int, rollout_size: int, repeats: int, seed: int) -> None:
        self.size, self.rollout_size, self.repeats, self.seed = size, rollout_size, repeats, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        for start in range(0, self.size - self.rollout_size + 1, self.rollout_size):
            group = order[start : start + self.rollout_size]
            for _ in range(self.repeats):
                yield from group

    def __len__(self) -> int:
        return (self.size // self.rollout_size) * self.rollout_size * self.repeats


def collate_rows(features: list[dict]) -> dict[str, torch.Tensor]:
    return {"rows": torch.tensor([feature["row"] for feature in features], dtype=torch.long)}


@dataclass(frozen=True)
class PPOSettings:
    """The knobs of PPO: keys of `sqltune train` of the same names (defaults and checks in
    `FinetuningArguments`)."""

    ppo_epochs: int
    ppo_buffer_size: int
    kl_coef: float
    cliprange: float
    vf_coef: float
    gamma: float
    lam: float
    ppo_whiten_rewards: bool
    max_completion_length: int

    @classmethod
    def from_arguments(cls, finetuning_args: FinetuningArguments) -> PPOSettings:
        """The run's settings; `max_completion_length` unset is `DEFAULT_COMPLETION_LENGTH`."""
        values = {field.name: getattr(finetuning_args, field.name) for field in dataclasses.fields(cls)}
        values["max_completion_length"] = values["max_completion_length"] or DEFAULT_COMPLETION_LENGTH
        return cls(**values)


@dataclass
class Rollout:
    """Sampled answers with everything the updates need, one row per answer: the sequences
    (`pack_sequences`), `logprobs` and `values` at sampling time, `advantages` and `returns`; the
    order of the rows in each pass; and what to log about it."""

    batch: dict[str, torch.Tensor]
    orders: list[torch.Tensor]
    stats: dict[str, float]

    def micro_batch(self, position: int, size: int, per_pass: int) -> dict[str, torch.Tensor]:
        """The rows of micro-batch `position` (counted from the rollout's first)."""
        start = (position % per_pass) * size
        rows = self.orders[position // per_pass][start : start + size]
        return {key: value[rows.to(value.device)] for key, value in self.batch.items()}


# (rows, prompt ids, answer ids) -> (one score per answer, shares to log)
Scorer = Callable[[list[int], list[list[int]], list[list[int]]], tuple[list[float], dict[str, float]]]


class PPOTrainer(SavesPolicyOnly, Trainer):
    """transformers' Trainer whose every step trains on a batch of a PPO rollout (module docstring).

    `prompts` are token ids (the dataset's `row` column indexes them), `scorer` scores answers,
    `value_head` is trained beside the model (same optimizer, gradients clipped together), and
    `ref_model` is the frozen reference of freeze/full runs (LoRA runs find theirs in the model)."""

    def __init__(
        self,
        *args,
        prompts: list[list[int]],
        scorer: Scorer,
        settings: PPOSettings,
        stop_ids: list[int],
        pad_id: int,
        value_head: ValueHead,
        ref_model: Any = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        from transformers import GenerationConfig

        self.prompts = prompts
        self.scorer = scorer
        self.settings = settings
        self.stop_ids = stop_ids
        self.pad_id = pad_id
        self.value_head = value_head.to(self.args.device)
        self.ref_model = ref_model.to(self.args.device).eval() if ref_model is not None else None
        self.micro_batches_per_pass = settings.ppo_buffer_size * self.args.gradient_accumulation_steps
        self.rollout_size = self.args.per_device_train_batch_size * self.micro_batches_per_pass
        self.calls_per_rollout = settings.ppo_epochs * self.micro_batches_per_pass
        self.generation_config = GenerationConfig(
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=settings.max_completion_length,
            eos_token_id=stop_ids,
            pad_token_id=pad_id,
            use_cache=True,
        )
        self._calls: int | None = None  # micro-batches since the first step (set when training starts)
        self._rollout: Rollout | None = None
        self._metrics: dict[str, list[float]] = defaultdict(list)

    # -- data: a rollout's questions once per micro-batch trained on them
    def get_train_dataloader(self):
        return self._get_dataloader(
            dataset=self.train_dataset,
            description="Training",
            batch_size=self.rollout_size,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    def _get_train_sampler(self, train_dataset=None) -> RolloutSampler:
        size = len(train_dataset if train_dataset is not None else self.train_dataset)
        return RolloutSampler(size, self.rollout_size, self.calls_per_rollout, self.args.seed)

    def _remove_unused_columns(self, dataset, description: str | None = None):
        return dataset  # the `row` column is the data

    def _prepare_inputs(self, inputs: dict) -> dict[str, torch.Tensor]:
        gradient_accumulation = self.args.gradient_accumulation_steps
        if self._calls is None:  # a new run, or a resumed one (its rollout is sampled again)
            self._calls = self.state.global_step * gradient_accumulation
        position = self._calls % self.calls_per_rollout
        self._calls += 1
        if position % gradient_accumulation == 0:
            self.value_head.zero_grad(set_to_none=True)  # the Trainer zeroes the model's only
        if position == 0 or self._rollout is None:
            self._rollout = self.make_rollout(inputs["rows"].tolist())
        return self._rollout.micro_batch(
            position, self.args.per_device_train_batch_size, self.micro_batches_per_pass
        )

    # -- the rollout
    @torch.no_grad()
    def make_rollout(self, rows: list[int]) -> Rollout:
        settings = self.settings
        policy = self.accelerator.unwrap_model(self.model)
        training = policy.training
        policy.eval()
        size = self.args.per_device_train_batch_size
        prompts = [self.prompts[row] for row in rows]
        starts = range(0, len(prompts), size)  # generation and forward passes: a micro-batch at a time
        with self.accelerator.autocast():
            completions: list[list[int]] = []
            for start in starts:
                completions += self.sample(policy, prompts[start : start + size])
            scores, shares = self.scorer(rows, prompts, completions)
            batch = pack_sequences(prompts, completions, self.pad_id)
            batch = {key: value.to(self.args.device) for key, value in batch.items()}
            parts = [
                self.rollout_logprobs(
                    policy, {key: value[start : start + size] for key, value in batch.items()}
                )
                for start in starts
            ]
        policy.train(training)
        logprobs, values, ref_logprobs = (torch.cat(part) for part in zip(*parts))
        mask = batch["completion_mask"]
        score = torch.tensor(scores, dtype=torch.float32, device=mask.device)
        rewards, kl = compute_rewards(score, logprobs, ref_logprobs, mask, settings.kl_coef)
        if settings.ppo_whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = gae(rewards, values, mask, settings.gamma, settings.lam)
        batch.update(
            logprobs=logprobs, values=values, advantages=masked_whiten(advantages, mask), returns=returns
        )
        generator = torch.Generator().manual_seed(self.args.seed + self.state.global_step)
        orders = [torch.randperm(len(rows), generator=generator) for _ in range(settings.ppo_epochs)]
        stats = {
            "reward": float(score.mean()),
            "kl": float(kl.sum(dim=1).mean()),
            "completion_length": float(mask.sum(dim=1).mean()),
            **shares,
        }
        return Rollout(batch, orders, stats)

    def sample(self, policy, prompts: list[list[int]]) -> list[list[int]]:
        """One sampled answer per prompt, cut after its first stop token."""
        input_ids, attention_mask = left_pad(prompts, self.pad_id)
        output = policy.generate(
            input_ids=input_ids.to(self.args.device),
            attention_mask=attention_mask.to(self.args.device),
            generation_config=self.generation_config,
        )
        return [until_stop(row, self.stop_ids) for row in output[:, input_ids.shape[1] :].tolist()]

    def rollout_logprobs(self, policy, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(policy log-probabilities, values, reference log-probabilities) of the answers."""
        logprobs, values, _ = self.completion_forward(policy, batch, with_values=True)
        if self.settings.kl_coef == 0:
            return logprobs, values, logprobs
        with self.reference(policy) as reference:
            ref_logprobs, _, _ = self.completion_forward(reference, batch, with_values=False)
        return logprobs, values, ref_logprobs

    @contextlib.contextmanager
    def reference(self, policy) -> Iterator[Any]:
        """The reference model: the frozen copy (freeze/full), else the policy with the "ref"
        adapter active (a continued adapter) or with its adapter disabled (a new one)."""
        if self.ref_model is not None:
            yield self.ref_model
        elif "ref" in policy.peft_config:
            policy.set_adapter("ref", inference_mode=True)
            try:
                yield policy
            finally:
                policy.set_adapter("default")
        else:
            with policy.disable_adapter():
                yield policy

    def completion_forward(
        self, model, batch: dict, with_values: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(log-probabilities, values or None, logits) at the answer tokens. Only the positions that
        predict answer tokens go through the LM head (`logits_to_keep`)."""
        width = batch["completion_mask"].shape[1]
        output = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            logits_to_keep=width + 1,
            output_hidden_states=with_values,
            use_cache=False,
        )
        logits = output.logits[:, :-1].float()
        logprobs = token_logprobs(logits, batch["input_ids"][:, -width:])
        values = None
        if with_values:
            with self.accelerator.autocast():
                values = self.value_head(output.hidden_states[-1][:, -width - 1 : -1]).float()
        return logprobs, values, logits

    # -- the update
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        settings = self.settings
        mask = inputs["completion_mask"]
        logprobs, values, logits = self.completion_forward(model, inputs, with_values=True)
        surrogate, clip_fraction, approx_kl = policy_loss(
            logprobs, inputs["logprobs"], inputs["advantages"], mask, settings.cliprange
        )
        value_error, value_clip_fraction = value_loss(
            values, inputs["values"], inputs["returns"], mask, settings.cliprange
        )
        with torch.no_grad():
            entropy = masked_mean(token_entropy(logits), mask)
        measured = {
            "policy_loss": surrogate.detach(),
            "value_loss": value_error.detach(),
            "clip_fraction": clip_fraction,
            "value_clip_fraction": value_clip_fraction,
            "approx_kl": approx_kl,
            "entropy": entropy,
        }
        # this batch's numbers, and those of the rollout it belongs to
        for key, value in {**measured, **self._rollout.stats}.items():
            self._metrics[key].append(float(value))
        loss = surrogate + settings.vf_coef * value_error
        return (loss, None) if return_outputs else loss

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, plus the value head's parameters (no weight decay)."""
        optimizer = super().create_optimizer(model)
        head = list(self.value_head.parameters())
        if not any(p is head[0] for group in optimizer.param_groups for p in group["params"]):
            optimizer.add_param_group({"params": head, "weight_decay": 0.0})
        return optimizer

    def _clip_grad_norm(self, model):
        parameters = [*model.parameters(), *self.value_head.parameters()]
        return self.accelerator.clip_grad_norm_(parameters, self.args.max_grad_norm)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._metrics:  # means over the micro-batches since the last log
            logs.update({key: sum(values) / len(values) for key, values in self._metrics.items()})
            self._metrics.clear()
        super().log(logs, start_time)

    # -- the value head travels with the run directory and every checkpoint
    def _save(self, output_dir: str | None = None, state_dict=None):
        super()._save(output_dir, state_dict)
        save_value_head(self.value_head, output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if (Path(resume_from_checkpoint) / VALUE_HEAD_FILE).is_file():
            load_value_head(self.value_head, resume_from_checkpoint)


# ---- scoring -----------------------------------------------------------------------------------------


class ExecutionScorer:
    """Scores answers with the execution reward; `db_ids` and `gold_sql` are indexed by row."""

    def __init__(self, reward, tokenizer, db_ids: list[str], gold_sql: list[str]) -> None:
        self.reward, self.tokenizer, self.db_ids, self.gold_sql = reward, tokenizer, db_ids, gold_sql

    def __call__(
        self, rows: list[int], prompts: list[list[int]], completions: list[list[int]]
    ) -> tuple[list[float], dict[str, float]]:
        texts = [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in completions]
        shares: dict[str, float] = {}  # execution/<outcome>: its share of the answers
        scores = self.reward(
            completions=texts,
            db_id=[self.db_ids[row] for row in rows],
            gold_sql=[self.gold_sql[row] for row in rows],
            log_metric=shares.__setitem__,
        )
        return scores, shares


class RewardModelScorer:
    """Scores prompt + answer with a reward model of `stage=rm` (same tokenizer and template)."""

    def __init__(self, model, pad_id: int, batch_size: int) -> None:
        self.model, self.pad_id, self.batch_size = model, pad_id, batch_size

    def __call__(
        self, rows: list[int], prompts: list[list[int]], completions: list[list[int]]
    ) -> tuple[list[float], dict[str, float]]:
        from sqltune.train.reward_model import reward_ids

        sequences = [prompt + completion for prompt, completion in zip(prompts, completions)]
        return reward_ids(self.model, sequences, self.pad_id, self.batch_size), {}


def reward_model_scorer(run_dir: str, template: Template, tokenizer, training_args) -> RewardModelScorer:
    """The scorer of `reward_model=<rm run>`; it must read the policy's tokens and template."""
    from sqltune.runcard import RUN_CARD
    from sqltune.train.reward_model import load_reward_model

    if not (Path(run_dir) / RUN_CARD).is_file():
        raise ConfigError(f"reward_model: {run_dir} is not a run directory of sqltune train stage=rm")
    model, rm_tokenizer, card = load_reward_model(run_dir, torch_dtype=half_precision(training_args))
    if card.template != template.name or rm_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(
            f"reward_model {run_dir} reads template {card.template} with its tokenizer, the policy "
            f"template {template.name}: train both from the same base model and template"
        )
    pad_id = rm_tokenizer.pad_token_id if rm_tokenizer.pad_token_id is not None else 0
    return RewardModelScorer(model, pad_id, training_args.per_device_train_batch_size)


# ---- the stage ---------------------------------------------------------------------------------------


@dataclass
class Questions:
    """The prompts of the training questions (token ids), with each one's database and gold SQL."""

    prompts: list[list[int]]
    db_ids: list[str | None]
    gold_sql: list[str]
    stats: dict[str, dict]


def read_questions(
    data_args: DataArguments, template: Template, tokenizer, budget: int, need_db_id: bool
) -> Questions:
    """Every question whose prompt fits `budget` tokens (schema shortened where it can be)."""
    questions = Questions([], [], [], {})
    for name in data_args.dataset_names:
        samples = read_samples(data_args.dataset_dir, name, data_args.max_samples)
        stats = {"samples": len(samples), "kept": 0, "dropped_too_long": 0}
        for line, sample in enumerate(samples, 1):
            if need_db_id and not sample.db_id:
                raise ConfigError(
                    f"stage=ppo executes answers and needs each question's db_id: dataset '{name}' "
                    f"record {line} has none (or score with reward_model=<an rm run>)"
                )
            ids = fit_prompt_ids(sample, template, tokenizer, budget)
            if ids is None:
                stats["dropped_too_long"] += 1
                continue
            questions.prompts.append(ids)
            questions.db_ids.append(sample.db_id)
            questions.gold_sql.append(sample.response)
            stats["kept"] += 1
        questions.stats[name] = stats
    if not questions.prompts:
        raise DataError(
            f"no question of {', '.join(data_args.dataset_names)} fits cutoff_len={data_args.cutoff_len}"
        )
    return questions


def attach_reference(model, model_args: ModelArguments, kl_coef: float):
    """The frozen copy of the starting model for freeze/full runs (returned), or for a continued
    adapter its frozen copy as adapter "ref" (loaded into `model`); None otherwise."""
    from peft import PeftModel

    if kl_coef == 0:
        return None
    if isinstance(model, PeftModel):
        if model_args.adapter_name_or_path:
            model.load_adapter(model_args.adapter_name_or_path, adapter_name="ref", is_trainable=False)
        return None
    reference = copy.deepcopy(model).eval()
    return reference.requires_grad_(False)


def build(
    model_args: ModelArguments,
    data_args: DataArguments,
    finetuning_args: FinetuningArguments,
    training_args,
    template: Template,
    tokenizer,
) -> StageRun:
    from datasets import Dataset

    from sqltune.infer.engine import stop_token_ids
    from sqltune.models.adapters import compute_under_autocast
    from sqltune.train.rewards import ExecutionReward

    if training_args.world_size > 1 or training_args.deepspeed:
        raise ConfigError("stage=ppo trains in one process: leave out nproc_per_node and deepspeed")
    settings = PPOSettings.from_arguments(finetuning_args)
    budget = data_args.cutoff_len - settings.max_completion_length
    if budget < 8:
        raise ConfigError(
            f"cutoff_len={data_args.cutoff_len} leaves no room for a prompt beside "
            f"max_completion_length={settings.max_completion_length}"
        )
    execution = finetuning_args.reward_model is None
    names = data_args.dataset_names
    run_settings: dict[str, Any] = dataclasses.asdict(settings)
    if execution:
        databases = reward_target(data_args, "ppo", finetuning_args.reward_db_url)
    else:
        scorer = reward_model_scorer(finetuning_args.reward_model, template, tokenizer, training_args)
        run_settings["reward"] = f"reward model {Path(finetuning_args.reward_model).resolve()}"
    questions = read_questions(data_args, template, tokenizer, budget, need_db_id=execution)
    rollout_size = (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * settings.ppo_buffer_size
    )
    if len(questions.prompts) < rollout_size:
        raise ConfigError(
            f"stage=ppo: a rollout takes per_device_train_batch_size x gradient_accumulation_steps x "
            f"ppo_buffer_size = {rollout_size} questions, the data has {len(questions.prompts)}"
        )
    if execution:
        reward = ExecutionReward(
            **databases,
            timeout=finetuning_args.reward_timeout,
            weights=finetuning_args.execution_reward_weights(),
        )
        for db_id in sorted(set(questions.db_ids)):
            reward.database(db_id)  # every database is there before the first step, or a one-line error
        scorer = ExecutionScorer(reward, tokenizer, questions.db_ids, questions.gold_sql)
        run_settings.update(
            reward="execution",
            reward_weights=dataclasses.asdict(reward.weights),
            reward_timeout_s=finetuning_args.reward_timeout,
            **reward.where(),
        )
    model, _ = load_policy(model_args, finetuning_args, training_args, trl=False)
    ref_model = attach_reference(model, model_args, settings.kl_coef)
    if half_precision(training_args):
        compute_under_autocast(model)
    stop_ids = stop_token_ids(template.name, tokenizer, model.generation_config.eos_token_id)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop_ids or [0])[0]
    trainer = PPOTrainer(
        model=model,
        args=training_args,
        train_dataset=Dataset.from_dict({"row": list(range(len(questions.prompts)))}),
        data_collator=collate_rows,
        processing_class=tokenizer,
        prompts=questions.prompts,
        scorer=scorer,
        settings=settings,
        stop_ids=stop_ids,
        pad_id=pad_id,
        value_head=ValueHead(model.config.hidden_size),
        ref_model=ref_model,
    )
    run_settings.update(
        rollout_size=trainer.rollout_size,
        optimizer_steps_per_rollout=settings.ppo_epochs * settings.ppo_buffer_size,
        sampling="temperature 1, no top-k or top-p",
        reference=reference_description(trainer) if settings.kl_coef else "none (kl_coef=0)",
        value_head=VALUE_HEAD_FILE,
    )

    def signals() -> dict:
        found = last_logged(trainer.state.log_history, PPO_SIGNALS)
        if execution:
            found["execution_outcomes"] = dict(reward.outcomes)
        return found

    return StageRun(
        trainer,
        len(questions.prompts),
        questions.stats,
        prompt_settings(data_args.dataset_dir, names),
        run_settings,
        signals=signals,
    )
