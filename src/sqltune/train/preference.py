"""`stage=dpo|orpo|simpo`: preference optimisation on pairs of answers, one preferred over the other.

For Text-to-SQL a pair is a question with a query that returns the right rows (`chosen`) and one
that does not (`rejected`), e.g. the model's own wrong answers beside the gold SQL. Each stage raises
the likelihood of the chosen answer relative to the rejected one; they differ in what they compare
with:

* dpo (TRL's `DPOTrainer`): the log-probability ratios of the policy against a frozen reference,
  the model the stage starts from (see `sqltune.train.stage` for how no second copy of the weights
  is kept with LoRA).
* orpo (TRL's `trl.experimental.orpo`): no reference. The loss is the chosen answer's negative
  log-likelihood plus `beta` times the log-sigmoid of the log odds ratio of chosen over rejected, so
  the stage does SFT and preference learning at once. The likelihood term is on the answer's tokens
  only, as in the ORPO paper, not on the prompt with its schema (`AnswerOnlyORPOTrainer`).
* simpo (TRL's `trl.experimental.cpo` with `loss_type="simpo"`, `cpo_alpha=0`): no reference. The
  reward of an answer is `beta` times its mean log-probability per token, and the chosen answer's
  reward must beat the rejected one's by the margin `simpo_gamma`. `cpo_alpha > 0` adds the chosen
  answer's negative log-likelihood (CPO's behaviour-cloning term).

Data: a dataset registered with `"ranking": true` and chosen/rejected columns, LLaMA-Factory's
pairwise format, so its pairwise datasets load unchanged (`stage=rm` reads the same):

* alpaca: `{"instruction", "input", "chosen", "rejected"[, "history", "system"]}`, answers as text;
* sharegpt: `{"conversations": [...], "chosen": {"from": "gpt", "value": ...}, "rejected": {...}}`,
  the conversation ending with the user's turn.

Each pair is tokenised here with the run's template, exactly as `predict` will prompt the model
(`sqltune.models.encoding`), and handed to TRL as token ids; a pair longer than `cutoff_len` is
left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqltune.args import DataArguments, FinetuningArguments, ModelArguments
from sqltune.data.prompts import Prompt
from sqltune.data.records import dataset_entry
from sqltune.errors import ConfigError, DataError
from sqltune.models.encoding import IGNORE_INDEX, encode_example, encode_prompt
from sqltune.models.templates import Template
from sqltune.train.data import SHAREGPT_TAGS, prompt_settings, read_rows
from sqltune.train.stage import (
    SavesPolicyOnly,
    StageRun,
    last_logged,
    load_policy,
    mixed_precision,
    reference_description,
    trl_config,
)

PAIRWISE_STAGES = ("dpo", "orpo", "simpo")
DPO_SIGNALS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
# what each stage's trainer logs that the run card keeps (the last logged value of each)
SIGNALS = {
    "dpo": DPO_SIGNALS,
    "orpo": (*DPO_SIGNALS, "log_odds_ratio", "log_odds_chosen", "nll_loss"),
    "simpo": (*DPO_SIGNALS, "logps/chosen", "logps/rejected"),
}


@dataclass
class Pair:
    prompt: Prompt
    chosen: str
    rejected: str
    system: str | None = None


def _message_text(value, tags: dict, where: str) -> str:
    if isinstance(value, dict):
        value = value.get(tags["content_tag"])
    if not isinstance(value, str):
        raise DataError(f"{where}: chosen and rejected must be answers (text, or a message with its text)")
    return value


def _alpaca_pair(row: dict, columns: dict, where: str) -> Pair:
    history = [(str(q), str(a)) for q, a in row.get(columns["history"]) or []]
    prompt = Prompt(str(row.get(columns["prompt"], "")), str(row.get(columns["query"], "")), history)
    chosen = _message_text(row.get(columns["chosen"]), SHAREGPT_TAGS, where)
    rejected = _message_text(row.get(columns["rejected"]), SHAREGPT_TAGS, where)
    return Pair(prompt, chosen, rejected, row.get(columns["system"]))


def _sharegpt_pair(row: dict, columns: dict, tags: dict, where: str) -> Pair:
    messages = [(m[tags["role_tag"]], str(m[tags["content_tag"]])) for m in row[columns["messages"]]]
    system = row.get(columns["system"])
    if messages and messages[0][0] == tags["system_tag"]:
        system, messages = messages[0][1], messages[1:]
    roles = [role for role, _ in messages]
    expected = ([tags["user_tag"], tags["assistant_tag"]] * len(messages))[: len(messages)]
    if not messages or len(messages) % 2 == 0 or roles != expected:
        raise DataError(f"{where}: the conversation must alternate user/assistant and end with the user")
    turns = [(messages[i][1], messages[i + 1][1]) for i in range(0, len(messages) - 1, 2)]
    chosen = _message_text(row[columns["chosen"]], tags, where)
    rejected = _message_text(row[columns["rejected"]], tags, where)
    return Pair(Prompt("", messages[-1][1], turns), chosen, rejected, system)


def read_pairs(
    dataset_dir: str | Path, name: str, max_samples: int | None = None, stage: str = "dpo"
) -> list[Pair]:
    """The pairs of one registered ranking dataset (the first `max_samples` when given); `stage`
    names the stage that needs them in the error for a dataset that is not pairwise."""
    dataset_dir = Path(dataset_dir)
    entry = dataset_entry(dataset_dir, name)
    if not entry.get("ranking"):
        raise ConfigError(
            f"stage={stage} needs pairwise data: dataset '{name}' is not registered with \"ranking\": true "
            "and chosen/rejected columns"
        )
    formatting = entry.get("formatting", "alpaca")
    columns = {
        "prompt": "instruction",
        "query": "input",
        "history": "history",
        "system": "system",
        "messages": "conversations",
        "chosen": "chosen",
        "rejected": "rejected",
        **entry.get("columns", {}),
    }
    tags = {**SHAREGPT_TAGS, **entry.get("tags", {})}
    if formatting not in ("alpaca", "sharegpt"):
        raise DataError(f"dataset '{name}': formatting '{formatting}' is not alpaca or sharegpt")
    pairs = []
    rows = read_rows(dataset_dir / entry["file_name"], f"records of dataset '{name}'")
    for line, row in enumerate(rows[:max_samples] if max_samples else rows, 1):
        where = f"dataset '{name}' record {line}"
        try:
            if formatting == "alpaca":
                pairs.append(_alpaca_pair(row, columns, where))
            else:
                pairs.append(_sharegpt_pair(row, columns, tags, where))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DataError(f"{where}: malformed pairwise record ({err!r})") from None
    return pairs


def answer_ids(pair: Pair, answer: str, template: Template, tokenizer) -> list[int]:
    """The ids of `answer` as the last response of the pair's conversation (with its end token)."""
    ids, labels = encode_example(pair.prompt, answer, template, tokenizer, pair.system)
    return [token for token, label in zip(ids, labels) if label != IGNORE_INDEX]


def encode_pairs(pairs: list[Pair], template: Template, tokenizer, cutoff_len: int) -> tuple[dict, dict]:
    """Columns `prompt_ids`, `chosen_ids`, `rejected_ids` (TRL's tokenised preference data), and counts."""
    columns: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": [], "length": []}
    stats = {"samples": len(pairs), "kept": 0, "dropped_too_long": 0, "tokens": 0}
    for pair in pairs:
        prompt = encode_prompt(pair.prompt, template, tokenizer, pair.system)
        chosen = answer_ids(pair, pair.chosen, template, tokenizer)
        rejected = answer_ids(pair, pair.rejected, template, tokenizer)
        if len(prompt) + max(len(chosen), len(rejected)) > cutoff_len:
            stats["dropped_too_long"] += 1
            continue
        for key, ids in (("prompt_ids", prompt), ("chosen_ids", chosen), ("rejected_ids", rejected)):
            columns[key].append(ids)
        columns["length"].append(len(prompt) + len(chosen) + len(rejected))
        stats["kept"] += 1
        stats["tokens"] += columns["length"][-1]
    return columns, stats


def read_encoded_pairs(
    data_args: DataArguments, template: Template, tokenizer, stage: str
) -> tuple[dict, dict]:
    """The tokenised pairs of every dataset of the run (`encode_pairs` columns) and each dataset's counts."""
    columns: dict[str, list] = {}
    data_stats = {}
    for name in data_args.dataset_names:
        pairs = read_pairs(data_args.dataset_dir, name, data_args.max_samples, stage)
        encoded, data_stats[name] = encode_pairs(pairs, template, tokenizer, data_args.cutoff_len)
        for key, values in encoded.items():
            columns.setdefault(key, []).extend(values)
    if not columns.get("prompt_ids"):
        raise DataError(
            f"no pair of {', '.join(data_args.dataset_names)} fits cutoff_len={data_args.cutoff_len}"
        )
    return columns, data_stats


def trl_pair_rows(columns: dict) -> dict[str, list]:
    """The pairs in the tokenised row form of TRL's ORPO and CPO trainers: the prompt, and prompt +
    answer with its labels (the prompt masked), for the chosen and the rejected answer."""
    rows: dict[str, list] = {"prompt_input_ids": columns["prompt_ids"], "length": columns["length"]}
    rows["prompt_attention_mask"] = [[1] * len(ids) for ids in columns["prompt_ids"]]
    for side in ("chosen", "rejected"):
        sequences = [p + a for p, a in zip(columns["prompt_ids"], columns[f"{side}_ids"])]
        rows[f"{side}_input_ids"] = sequences
        rows[f"{side}_attention_mask"] = [[1] * len(ids) for ids in sequences]
        rows[f"{side}_labels"] = [
            [IGNORE_INDEX] * len(p) + a for p, a in zip(columns["prompt_ids"], columns[f"{side}_ids"])
        ]
    return rows


def dpo_trainer(columns: dict, model, peft_config, config, tokenizer):
    """TRL's DPOTrainer on sqltune's tokenised pairs."""
    from datasets import Dataset
    from trl import DPOTrainer

    class TokenizedDPOTrainer(SavesPolicyOnly, DPOTrainer):
        """DPOTrainer on pairs sqltune tokenised itself (the run's template, like `predict`)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "length" not in self._signature_columns:  # train_sampling_strategy=group_by_length
                self._signature_columns = [*self._signature_columns, "length"]

    return TokenizedDPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict(columns),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def reference_free_trainer(stage: str, columns: dict, model, peft_config, config, tokenizer):
    """TRL's ORPOTrainer (orpo) or CPOTrainer (simpo) on sqltune's tokenised pairs."""
    from datasets import Dataset
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    class TokenizedPairs:
        """The rows arrive tokenised by sqltune (`trl_pair_rows`): TRL's own tokenising is skipped."""

        def tokenize_row(self, feature, model=None) -> dict:
            return {}

    class AnswerOnlyORPOTrainer(TokenizedPairs, ORPOTrainer):
        """ORPO whose likelihood term is the chosen answer's negative log-likelihood per token, as in
        the paper's L_SFT; TRL's takes it over prompt and answer, and the prompt is mostly schema."""

        def concatenated_forward(self, model, batch):
            outputs = super().concatenated_forward(model, batch)
            chosen_logps = outputs[0]  # mean log-probability per answer token
            return (*outputs[:4], -chosen_logps.mean(), *outputs[5:])

    class TokenizedCPOTrainer(TokenizedPairs, CPOTrainer):
        """CPOTrainer (SimPO's loss here) on pairs sqltune tokenised itself."""

    trainer_class = AnswerOnlyORPOTrainer if stage == "orpo" else TokenizedCPOTrainer
    return trainer_class(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict(trl_pair_rows(columns)),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def stage_config(finetuning_args: FinetuningArguments, training_args, max_length: int):
    """The TRL config of the stage, with the stage's own knobs (None keeps TRL's default)."""
    stage = finetuning_args.stage
    if stage == "dpo":
        from trl import DPOConfig

        losses = [
            name.strip() for name in (finetuning_args.loss_type or "sigmoid").split(",") if name.strip()
        ]
        weights = [1.0] * len(losses)
        if finetuning_args.pref_ftx:  # RPO: the chosen answer's own likelihood beside the preference
            losses, weights = [*losses, "sft"], [*weights, finetuning_args.pref_ftx]
        return trl_config(
            DPOConfig,
            training_args,
            beta=finetuning_args.beta,
            loss_type=losses,
            loss_weights=weights,
            max_length=max_length,
        )
    if finetuning_args.pref_ftx:
        raise ConfigError(f"stage={stage}: pref_ftx is for dpo")
    if finetuning_args.loss_type:
        raise ConfigError(f"stage={stage} has one loss: loss_type is for dpo, kto and grpo")
    if stage == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return trl_config(ORPOConfig, training_args, beta=finetuning_args.beta, max_length=max_length)
    from trl.experimental.cpo import CPOConfig

    return trl_config(
        CPOConfig,
        training_args,
        loss_type="simpo",
        beta=finetuning_args.beta,
        simpo_gamma=finetuning_args.simpo_gamma,
        cpo_alpha=finetuning_args.cpo_alpha if finetuning_args.cpo_alpha is not None else 0.0,
        max_length=max_length,
    )


def build(
    model_args: ModelArguments,
    data_args: DataArguments,
    finetuning_args: FinetuningArguments,
    training_args,
    template: Template,
    tokenizer,
) -> StageRun:
    stage = finetuning_args.stage
    if stage not in PAIRWISE_STAGES:
        raise ConfigError(f"stage={stage} is not a stage of sqltune.train.preference")
    columns, data_stats = read_encoded_pairs(data_args, template, tokenizer, stage)
    config = stage_config(finetuning_args, training_args, data_args.cutoff_len)
    model, peft_config = load_policy(model_args, finetuning_args, training_args, trl=True)
    if stage == "dpo":
        trainer = dpo_trainer(columns, model, peft_config, config, tokenizer)
        settings = {
            "beta": config.beta,
            "loss_type": list(config.loss_type),
            "loss_weights": list(config.loss_weights),
            "reference": reference_description(trainer),
        }
    else:
        trainer = reference_free_trainer(stage, columns, model, peft_config, config, tokenizer)
        settings = {"beta": config.beta, "reference": "none (the loss needs no reference model)"}
        if stage == "simpo":
            settings.update(loss_type="simpo", simpo_gamma=config.simpo_gamma, cpo_alpha=config.cpo_alpha)
    signal_keys = SIGNALS[stage] + (("nll_loss",) if getattr(config, "cpo_alpha", 0) else ())
    mixed_precision(trainer, training_args)
    return StageRun(
        trainer,
        len(columns["prompt_ids"]),
        data_stats,
        prompt_settings(data_args.dataset_dir, data_args.dataset_names),
        settings,
        signals=lambda: last_logged(trainer.state.log_history, signal_keys),
    )
