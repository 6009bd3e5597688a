"""`stage=rm`: a reward model, a network that reads a question and an answer and returns one score.

For Text-to-SQL the execution reward (`sqltune.train.rewards`) needs the question's database and a
gold query; a reward model needs neither once trained. It learns from the same pairs as DPO (a query
that returns the right rows above one that does not) to score the chosen answer above the rejected
one, with the pairwise loss `-log sigmoid(r_chosen - r_rejected)` of TRL's `RewardTrainer`. PPO then
samples answers and learns from these scores (`stage=ppo reward_model=<this run>`).

The model is the causal LM's body under a linear head with one output (`score`) in place of the LM
head: transformers' `AutoModelForSequenceClassification` with `num_labels=1`. Its reward for a
sequence is the head's output at the last token that is not padding. With `finetuning_type=lora` the
adapters (peft task type SEQ_CLS) train with the new head in full, and peft saves the head inside
the adapter; `freeze` trains the last layers and the head, `full` everything. Started from an SFT
run (`adapter_name_or_path=<sft run>`), the SFT adapter keeps training, now under the score head.

Data: ranking datasets as for `stage=dpo` (`sqltune.train.preference`): each sequence is the prompt
and one answer rendered with the run's template, exactly as DPO's pairs and `predict`'s prompts
are, ending with the template's end-of-turn token.

A run of this stage writes no SQL: predict, ask, export and later stages refuse it as a model
(`sqltune.models.loading.refuse_reward_model`); `load_reward_model` loads it for scoring.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sqltune.args import DataArguments, FinetuningArguments, ModelArguments
from sqltune.data.prompts import Prompt
from sqltune.errors import ConfigError
from sqltune.models.encoding import IGNORE_INDEX, encode_example
from sqltune.models.templates import Template
from sqltune.runcard import RunCard
from sqltune.train.stage import StageRun, half_precision, last_logged, mixed_precision, trl_config

RM_SIGNALS = ("accuracy", "margin", "mean_reward", "min_reward", "max_reward")
HEAD_NAMES = ("score", "classifier")  # what transformers calls the head of a sequence classifier


def load_reward_model(run_dir: str | Path, torch_dtype: Any = None) -> tuple[Any, Any, RunCard]:
    """Load a reward model trained by `stage=rm` for scoring: returns `(model, tokenizer, card)`.

    `model` is a transformers sequence classifier in eval mode (a LoRA adapter is merged into the
    base weights, unless they are quantised: then it stays attached), on the GPU when there is one.
    `model(input_ids, attention_mask=...).logits[:, 0]` is each row's reward, read at the row's last
    token that is not the pad token (`tokenizer.pad_token_id`, which the model's config carries),
    so rows may be padded on either side. Score the sequences the model was trained on: the prompt
    ids as `predict` builds them with `card.template`, then the answer's ids through its end-of-turn
    token, which is what a policy samples (prompt ids + a generated answer that stopped at one of
    the template's stop tokens, kept). `scored_ids` builds them from text; `reward_ids` and
    `reward_texts` score them.

    `torch_dtype` ("bfloat16", `torch.bfloat16`...) overrides the dtype the run was trained in.
    A run directory of another stage is a ConfigError.
    """
    from peft import PeftModel
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from sqltune.infer.engine import is_quantized
    from sqltune.models.loading import has_cuda, load_model, load_tokenizer, model_arguments_from_card

    run_dir = Path(run_dir)
    card = RunCard.load(run_dir)
    if card.stage != "rm":
        raise ConfigError(
            f"{run_dir} is not a reward model (stage={card.stage}); train one with sqltune train stage=rm"
        )
    overrides = {}
    if torch_dtype is not None:
        overrides["torch_dtype"] = str(torch_dtype).removeprefix("torch.")
    model_args = model_arguments_from_card(card, **overrides)
    tokenizer = load_tokenizer(model_args, path=str(run_dir))
    if (run_dir / "adapter_config.json").is_file():
        with suppress_seqcls_warning():  # the head comes from the adapter, not the base model
            model = load_model(model_args, num_labels=1)
        model = PeftModel.from_pretrained(model, str(run_dir))
        if not is_quantized(model.get_base_model()):
            model = model.merge_and_unload()
    else:  # freeze/full: the run directory holds the whole classifier
        model = load_model(
            dataclasses.replace(model_args, rope_scaling=None), path=str(run_dir), num_labels=1
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    if has_cuda() and getattr(model, "hf_device_map", None) is None:
        model = model.to("cuda")
    return model.eval(), tokenizer, card


def scored_ids(
    prompt: Prompt, answer: str, template: Template, tokenizer, system: str | None = None
) -> list[int]:
    """The token ids a reward model scores for `answer` to `prompt`, as in training: the prompt as
    `predict` builds it with the run's template, then the answer up to its end token."""
    ids, labels = encode_example(prompt, answer, template, tokenizer, system)
    start = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    return ids[:start] + through_end_token(ids[start:], template.stop_token_ids(tokenizer))


def through_end_token(answer_ids: list[int], stop_ids: list[int]) -> list[int]:
    """An answer's ids up to its last end-of-turn token: where a generated answer stops. A template
    may write more after it (a newline), which generation never produces; a reward read at the
    last token then sees the same token in training as when it scores a sampled answer."""
    ends = [i for i, token in enumerate(answer_ids) if token in stop_ids]
    return answer_ids[: ends[-1] + 1] if ends else answer_ids


def reward_ids(model, sequences: list[list[int]], pad_token_id: int, batch_size: int = 8) -> list[float]:
    """The reward of each token sequence (see `load_reward_model`), scored `batch_size` at a time."""
    import torch

    rewards: list[float] = []
    device = next(model.parameters()).device
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        rewards += logits[:, 0].float().tolist()
    return rewards


def reward_texts(model, tokenizer, texts: list[str], batch_size: int = 8) -> list[float]:
    """The reward of each text: prompt and answer already rendered with the run's template (special
    tokens written out, as `tokenizer.decode(scored_ids(...))` gives them)."""
    sequences = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    return reward_ids(model, sequences, tokenizer.pad_token_id, batch_size)


def score_head(model):
    """The classifier's head (`score` in transformers' generic classifiers)."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if head is not None:
            return name, head
    raise ConfigError(f"{type(model).__name__} has no score head: this model cannot be a reward model")


def load_scorer(
    model_args: ModelArguments, finetuning_args: FinetuningArguments, training_args
) -> tuple[Any, Any]:
    """(model, peft_config): the classifier to train and, for a new LoRA adapter that TRL applies,
    its LoraConfig (task type SEQ_CLS, the head trained in full and saved with the adapter)."""
    from peft import PeftConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
    from peft.utils import load_peft_weights, set_peft_model_state_dict
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from sqltune.models.adapters import apply_finetuning, lora_config, trainable_in_float32
    from sqltune.models.loading import load_model

    half = half_precision(training_args)
    load_args = (
        dataclasses.replace(model_args, torch_dtype=half)
        if half and model_args.torch_dtype == "auto"
        else model_args
    )
    with suppress_seqcls_warning():  # the head is new: that is the point
        model = load_model(load_args, num_labels=1)
    head_name, head = score_head(model)
    if finetuning_args.finetuning_type != "lora":
        model = apply_finetuning(model, finetuning_args, model_args)  # freeze or full
        head.requires_grad_(True)
        return trainable_in_float32(model), None
    if model_args.quantization_bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    adapter = model_args.adapter_name_or_path
    if adapter:  # e.g. an SFT run: its adapter keeps training, under the new head
        config = PeftConfig.from_pretrained(adapter)
        config.task_type = TaskType.SEQ_CLS
        config.modules_to_save = sorted({*(config.modules_to_save or []), head_name})
        config.inference_mode = False
        # the adapter holds no head (peft would refuse to load it as it is): the new head keeps
        # its initial weights
        head_weights = {f"base_model.model.{head_name}.{k}": v for k, v in head.state_dict().items()}
        model = get_peft_model(model, config)
        set_peft_model_state_dict(model, {**head_weights, **load_peft_weights(adapter)})
        return model, None
    config = lora_config(model, finetuning_args, model_args)
    modules = sorted({*(config.modules_to_save or []), head_name})
    return model, dataclasses.replace(config, task_type=TaskType.SEQ_CLS, modules_to_save=modules)


def build(
    model_args: ModelArguments,
    data_args: DataArguments,
    finetuning_args: FinetuningArguments,
    training_args,
    template: Template,
    tokenizer,
) -> StageRun:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from sqltune.train.data import prompt_settings
    from sqltune.train.preference import read_encoded_pairs

    class TokenizedRewardTrainer(RewardTrainer):
        """RewardTrainer on sequences sqltune tokenised itself (the run's template, like `predict`)."""

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "length" not in self._signature_columns:  # train_sampling_strategy=group_by_length
                self._signature_columns = [*self._signature_columns, "length"]

    pairs, data_stats = read_encoded_pairs(data_args, template, tokenizer, "rm")
    stops = template.stop_token_ids(tokenizer)
    rows = {
        f"{side}_ids": [
            p + through_end_token(a, stops) for p, a in zip(pairs["prompt_ids"], pairs[f"{side}_ids"])
        ]
        for side in ("chosen", "rejected")
    }
    rows["length"] = pairs["length"]
    config = trl_config(RewardConfig, training_args, max_length=data_args.cutoff_len)
    model, peft_config = load_scorer(model_args, finetuning_args, training_args)
    trainer = TokenizedRewardTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    mixed_precision(trainer, training_args)
    settings = {
        "head": f"{score_head(model)[0]} (one output)",
        "reward": "the head's output at the last token of prompt + answer",
        "loss": "-log sigmoid(r_chosen - r_rejected)",
    }
    return StageRun(
        trainer,
        len(rows["chosen_ids"]),
        data_stats,
        prompt_settings(data_args.dataset_dir, data_args.dataset_names),
        settings,
        signals=lambda: last_logged(trainer.state.log_history, RM_SIGNALS),
    )
