"""`stage=kto`: Kahneman-Tversky optimisation on answers labelled desirable or undesirable, unpaired.

Pairs need a right and a wrong answer to the same question; KTO needs only a verdict per answer,
which is what executing a query gives: a model answer that returns the gold result is desirable,
one that returns wrong rows or fails is not (`sqltune data pairs` writes such a dataset beside its
pairs). KTO raises the likelihood of desirable answers and lowers that of undesirable ones relative
to a frozen reference (the starting model; with LoRA the base with the adapter disabled, as for
DPO), each measured against an estimate of the policy's KL divergence from the reference. The loss
is TRL's `KTOTrainer`; `desirable_weight` and `undesirable_weight` balance a dataset with more of one
kind (the KTO paper suggests weights that make `desirable_weight * desirable count` about equal to
`undesirable_weight * undesirable count`, or up to 4/3 of it).

TRL estimates the KL term from mismatched pairs within a batch: each prompt with the answer of the
previous prompt in the batch. That needs `per_device_train_batch_size >= 2` and batches in a fixed
order (`train_sampling_strategy=sequential`, set here), so the records are shuffled once, with
`seed`, before batching.

Data: LLaMA-Factory's KTO format, an SFT dataset (alpaca or sharegpt) with a boolean per record
mapped as `kto_tag` in `dataset_info.json`:

    "my_kto": {"file_name": "my_kto.jsonl", "columns": {"response": "output", "kto_tag": "label"}}

with records `{"instruction", "input", "output", "label": true|false}` (sharegpt: the conversation
ends with the assistant's answer, and `label` says whether that answer is desirable). Prompts and
answers are tokenised with the run's template exactly as `predict` prompts; an over-long prompt of a
`sqltune data` dataset has its schema shortened as in SFT, else the record is left out and counted.
"""

from __future__ import annotations

import random
from pathlib import Path

from sqltune.args import DataArguments, FinetuningArguments, ModelArguments
from sqltune.data.records import dataset_entry
from sqltune.errors import ConfigError, DataError
from sqltune.models.encoding import IGNORE_INDEX, encode_example
from sqltune.models.templates import Template
from sqltune.train.data import Sample, fit_sample, prompt_settings, read_rows, read_samples
from sqltune.train.stage import (
    SavesPolicyOnly,
    StageRun,
    last_logged,
    load_policy,
    mixed_precision,
    reference_description,
    trl_config,
)

KTO_SIGNALS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "kl",
    "logps/chosen",
    "logps/rejected",
)
KTO_LOSSES = ("kto", "apo_zero_unpaired")  # TRL's; apo_zero_unpaired has no KL term


def read_labels(dataset_dir: str | Path, name: str, max_samples: int | None = None) -> list[bool]:
    """Each record's `kto_tag` (true: a desirable answer), in record order."""
    dataset_dir = Path(dataset_dir)
    entry = dataset_entry(dataset_dir, name)
    column = entry.get("columns", {}).get("kto_tag")
    if not column:
        raise ConfigError(
            f"stage=kto needs a desirable/undesirable label per answer: dataset '{name}' maps no kto_tag "
            'column (register "columns": {"kto_tag": "<column>"} with true/false per record)'
        )
    rows = read_rows(dataset_dir / entry["file_name"], f"records of dataset '{name}'")
    labels = []
    for line, row in enumerate(rows[:max_samples] if max_samples else rows, 1):
        value = row.get(column) if isinstance(row, dict) else None
        if not isinstance(value, bool):
            raise DataError(
                f"dataset '{name}' record {line}: its kto_tag column '{column}' must be true or false, "
                f"got {value!r}"
            )
        labels.append(value)
    return labels


def encode_answers(
    samples: list[Sample], labels: list[bool], template: Template, tokenizer, cutoff_len: int
) -> tuple[dict[str, list], dict]:
    """Columns `prompt_ids`, `completion_ids`, `label` (TRL's tokenised unpaired data) and counts."""
    columns: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "label": []}
    stats = {"samples": len(samples), "kept": 0, "desirable": 0, "undesirable": 0, "shortened": 0}
    stats.update(dropped_too_long=0, tokens=0)
    for sample, label in zip(samples, labels):
        ids, mask = encode_example(sample.prompt, sample.response, template, tokenizer, sample.system)
        answer = [token for token, target in zip(ids, mask) if target != IGNORE_INDEX]
        prompt = ids[: len(ids) - len(answer)]  # the answer is the last turn's response
        if len(ids) > cutoff_len:
            fitted = fit_sample(sample, template, tokenizer, cutoff_len, reserved=len(answer))
            if fitted is None:
                stats["dropped_too_long"] += 1
                continue
            prompt = fitted.prompt_ids
            stats["shortened"] += 1
        columns["prompt_ids"].append(prompt)
        columns["completion_ids"].append(answer)
        columns["label"].append(label)
        stats["kept"] += 1
        stats["desirable" if label else "undesirable"] += 1
        stats["tokens"] += len(prompt) + len(answer)
    return columns, stats


def build(
    model_args: ModelArguments,
    data_args: DataArguments,
    finetuning_args: FinetuningArguments,
    training_args,
    template: Template,
    tokenizer,
) -> StageRun:
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    class TokenizedKTOTrainer(SavesPolicyOnly, KTOTrainer):
        """KTOTrainer on answers sqltune tokenised itself (the run's template, like `predict`)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if not self.calculate_KL:
                return dataset

            def mismatched(batch: dict) -> dict:  # each prompt with the previous prompt's answer
                answers = batch["completion_ids"]
                return {"KL_completion_ids": answers[-1:] + answers[:-1]}

            return dataset.map(mismatched, batched=True, batch_size=args.per_device_train_batch_size)

    loss_type = finetuning_args.loss_type or "kto"
    if loss_type not in KTO_LOSSES:
        raise ConfigError(f"loss_type: stage=kto takes {' or '.join(KTO_LOSSES)}, not '{loss_type}'")
    if loss_type == "kto" and training_args.per_device_train_batch_size < 2:
        raise ConfigError(
            "stage=kto needs per_device_train_batch_size >= 2: its KL estimate pairs each prompt with "
            "another answer of the same batch"
        )
    columns: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "label": []}
    data_stats = {}
    for name in data_args.dataset_names:
        labels = read_labels(data_args.dataset_dir, name, data_args.max_samples)
        samples = read_samples(data_args.dataset_dir, name, data_args.max_samples)
        encoded, data_stats[name] = encode_answers(samples, labels, template, tokenizer, data_args.cutoff_len)
        for key, values in encoded.items():
            columns[key].extend(values)
    if not columns["label"]:
        raise DataError(
            f"no answer of {', '.join(data_args.dataset_names)} fits cutoff_len={data_args.cutoff_len}"
        )
    order = list(range(len(columns["label"])))
    random.Random(training_args.seed).shuffle(order)  # batches are taken in order (see above)
    columns = {key: [values[i] for i in order] for key, values in columns.items()}
    config = trl_config(
        KTOConfig,
        training_args,
        beta=finetuning_args.beta,
        loss_type=loss_type,
        desirable_weight=finetuning_args.desirable_weight,
        undesirable_weight=finetuning_args.undesirable_weight,
        max_length=data_args.cutoff_len,
        train_sampling_strategy="sequential",
    )
    model, peft_config = load_policy(model_args, finetuning_args, training_args, trl=True)
    trainer = TokenizedKTOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict(columns),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    mixed_precision(trainer, training_args)
    settings = {
        "beta": config.beta,
        "loss_type": config.loss_type,
        "desirable_weight": config.desirable_weight,
        "undesirable_weight": config.undesirable_weight,
        "desirable": sum(columns["label"]),
        "undesirable": len(columns["label"]) - sum(columns["label"]),
        "reference": reference_description(trainer),
    }
    return StageRun(
        trainer,
        len(columns["label"]),
        data_stats,
        prompt_settings(data_args.dataset_dir, data_args.dataset_names),
        settings,
        signals=lambda: last_logged(trainer.state.log_history, KTO_SIGNALS),
    )
