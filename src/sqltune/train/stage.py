"""What every training stage shares: its starting point, the model it trains, TRL's configuration.

`sqltune train` runs one stage (`stage=pt|sft|rm|dpo|kto|orpo|simpo|ppo|grpo`). A stage module
(`sqltune.args.STAGE_MODULES`: `pretrain`, `sft`, `reward_model`, `preference`, `kto`, `ppo`, `grpo`)
reads its data and builds a Trainer; `sqltune.train.command` does the rest the same way for all of
them (the run directory, the log, the run card, the summary). This module holds the pieces more
than one stage needs:

* `starting_point`: `adapter_name_or_path=<an earlier run>` continues from that run's LoRA adapter
  on that run's base model and template (DPO or GRPO after SFT is the normal use), unless the
  model is given too. A freeze/full run directory is a whole model: give it as `model_name_or_path`.
* `load_policy`: the model, loaded in the compute dtype where it is frozen, with sqltune's
  fine-tuning applied, or, for a new LoRA adapter in a TRL stage, the base model and the
  `LoraConfig` for TRL to apply. TRL then computes the reference log-probabilities of DPO (and of
  GRPO with `beta > 0`) with the adapter disabled: the base model is the reference, and no second
  copy of the weights exists. Continuing an adapter, TRL keeps a frozen copy of the starting adapter
  as the reference (the SFT model, which DPO should stay close to): a copy of the adapter only.
* `trl_config`: sqltune's training options mapped onto a TRL config class. TRL's configs default to
  `bf16=True` and `gradient_checkpointing=True`; here `bf16` is sqltune's resolved decision
  (`sqltune.precision`, `bf16=auto`), `gradient_checkpointing` is sqltune's option (default off),
  and without a GPU `use_cpu=True`. TRL's stage knobs (`beta`, `loss_type`, `num_generations`,
  `max_completion_length`) keep TRL's defaults unless given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqltune.args import FinetuningArguments, ModelArguments, PromptArguments
from sqltune.errors import ConfigError
from sqltune.runcard import RUN_CARD, RunCard

# Trainer options a TRL stage does not take from sqltune: TRL decides them for its own data
# (GRPO hands the extra dataset columns to the reward, so it keeps them).
_TRL_DECIDES = {"remove_unused_columns"}


@dataclass
class StageRun:
    """A stage ready to train: its Trainer and what the run card should say about it."""

    trainer: Any
    train_examples: int
    data_stats: dict[str, Any]
    prompt_args: PromptArguments | None
    settings: dict[str, Any] = field(default_factory=dict)  # the stage's own settings, for the run card
    eval_examples: int = 0
    signals: Callable[[], dict[str, Any]] = dict  # the stage's own signals after training (run card)


def starting_point(model_args: ModelArguments) -> tuple[ModelArguments, RunCard | None]:
    """The model arguments to train from, and the run card of the run continued (if any)."""
    from sqltune.models.embedded import DEFAULT_MODEL
    from sqltune.models.loading import model_arguments_from_card, refuse_reward_model

    adapter = model_args.adapter_name_or_path
    if not adapter or not (Path(adapter) / RUN_CARD).is_file():
        return model_args, None
    card = RunCard.load(adapter)
    refuse_reward_model(card, adapter)  # a reward model is no policy to continue
    if model_args.model_name_or_path != DEFAULT_MODEL:
        return model_args, card  # the user named the base model
    template = card.template if model_args.template == "auto" else model_args.template
    # the attention to train with is this run's choice, not the earlier run's
    attention = {"shift_attn": model_args.shift_attn, "group_size_ratio": model_args.group_size_ratio}
    return model_arguments_from_card(card, adapter_name_or_path=adapter, template=template, **attention), card


def half_precision(training_args) -> str | None:
    return "bfloat16" if training_args.bf16 else "float16" if training_args.fp16 else None


def load_policy(
    model_args: ModelArguments, finetuning_args: FinetuningArguments, training_args, trl: bool
) -> tuple[Any, Any]:
    """(model, peft_config): the model to train and, for a new LoRA adapter that TRL should apply
    itself (`trl=True`), its LoraConfig; otherwise the model already carries its trainable part."""
    from sqltune.models.adapters import apply_finetuning, lora_config
    from sqltune.models.loading import load_model

    half = half_precision(training_args)
    # frozen weights in the compute dtype: half the memory and no casts every step
    load_args = (
        replace(model_args, torch_dtype=half) if half and model_args.torch_dtype == "auto" else model_args
    )
    model = load_model(load_args)
    new_adapter = finetuning_args.finetuning_type == "lora" and not model_args.adapter_name_or_path
    if trl and new_adapter:
        if model_args.quantization_bit:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return model, lora_config(model, finetuning_args, model_args)
    return apply_finetuning(model, finetuning_args, model_args), None


def mixed_precision(trainer, training_args) -> None:
    """After a TRL trainer has wrapped the model (and applied a new LoRA adapter): trained weights
    in float32 (a new adapter's additional_target modules, a reward model's head), and, in bf16/fp16,
    every forward under autocast, where the half-precision frozen weights meet them; and the lean
    activations (`sqltune.models.lean`)."""
    from sqltune.models import lean
    from sqltune.models.adapters import compute_under_autocast, trainable_in_float32

    trainable_in_float32(trainer.model)
    if half_precision(training_args):
        compute_under_autocast(trainer.model)
    lean.configure(trainer.model, training_args)


def trl_config(config_class: type, training_args, **stage_options: Any):
    """A TRL config (`DPOConfig`, `GRPOConfig`...) from sqltune's training options (module docstring);
    `stage_options` given as None keep TRL's defaults."""
    import torch

    accepted = {f.name for f in dataclasses.fields(config_class) if f.init}
    values = {
        key: value
        for key, value in training_args.to_dict().items()
        if key in accepted and key not in _TRL_DECIDES and not key.endswith("_token")
    }
    values.update(bf16=bool(training_args.bf16), fp16=bool(training_args.fp16))
    values["gradient_checkpointing"] = bool(training_args.gradient_checkpointing)
    if training_args.gradient_checkpointing:
        values["gradient_checkpointing_kwargs"] = training_args.gradient_checkpointing_kwargs or {
            "use_reentrant": False
        }
    if not torch.cuda.is_available():
        values["use_cpu"] = True
    values.update({key: value for key, value in stage_options.items() if value is not None})
    try:
        return config_class(**values)
    except (TypeError, ValueError) as err:  # TRL's checks (e.g. batch sizes) as one line
        raise ConfigError(f"{config_class.__name__}: {str(err).splitlines()[0]}") from None


class SavesPolicyOnly:
    """Trainer mixin: a TRL trainer continuing a LoRA adapter keeps its frozen reference copy as a
    second adapter, "ref", which peft saves into `ref/`. The run (and every checkpoint) keeps only
    the trained adapter; resuming re-creates the reference from the starting adapter, as it was."""

    def _save(self, output_dir: str | None = None, state_dict=None):
        import shutil

        super()._save(output_dir, state_dict)
        reference = Path(output_dir or self.args.output_dir) / "ref"
        if (reference / "adapter_config.json").is_file():
            shutil.rmtree(reference)


def reference_description(trainer) -> str:
    """What the trainer compares the policy with (run card), read from the trainer itself."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if getattr(trainer, "ref_model", None) is not None:
        return "a separate copy of the starting model"
    if isinstance(model, PeftModel):
        if "ref" in model.peft_config:
            return "a frozen copy of the starting adapter on the same base weights"
        return "the base model (adapter disabled), no second copy of the weights"
    return "none"


def last_logged(log_history: list[dict], keys: tuple[str, ...]) -> dict[str, float]:
    """The last logged value of each key that was logged at all."""
    found: dict[str, float] = {}
    for row in log_history:
        for key in keys:
            if key in row:
                found[key] = row[key]
    return found
