"""`stage=sft`: supervised fine-tuning on the records of `sqltune data` (the default stage).

The loss is the next-token cross-entropy of the answer (the gold SQL) given the prompt, computed by
`SftTrainer` (`sqltune.train.trainer`) on batches from `sqltune.train.data`.
"""

from __future__ import annotations

from sqltune.args import DataArguments, FinetuningArguments, ModelArguments
from sqltune.models.templates import Template
from sqltune.train.stage import StageRun, half_precision, load_policy


def build(
    model_args: ModelArguments,
    data_args: DataArguments,
    finetuning_args: FinetuningArguments,
    training_args,
    template: Template,
    tokenizer,
) -> StageRun:
    from transformers.trainer_utils import IntervalStrategy

    from sqltune.models.loading import resolve_base
    from sqltune.models.multimodal import is_multimodal
    from sqltune.train.data import build_features, collator, prompt_settings, split_validation, to_dataset

    if is_multimodal(resolve_base(model_args)):  # a vision-language model: images in the records
        from sqltune.train import multimodal

        return multimodal.build(model_args, data_args, finetuning_args, training_args, template, tokenizer)
    names = data_args.dataset_names
    prompt_args = prompt_settings(data_args.dataset_dir, names + data_args.eval_dataset_names)
    features, data_stats = build_features(data_args, names, template, tokenizer)
    train_features, eval_features = split_validation(features, data_args.val_size, training_args.seed)
    if data_args.eval_dataset_names:
        eval_features, eval_stats = build_features(
            data_args, data_args.eval_dataset_names, template, tokenizer
        )
        data_stats.update({f"eval:{k}": v for k, v in eval_stats.items()})
    if eval_features and training_args.eval_strategy == IntervalStrategy.NO:
        training_args.eval_strategy = IntervalStrategy.STEPS
        training_args.eval_steps = training_args.eval_steps or training_args.logging_steps
    trainer = token_loss_trainer(
        model_args,
        finetuning_args,
        training_args,
        tokenizer,
        to_dataset(train_features),
        to_dataset(eval_features) if eval_features else None,
        collator(tokenizer, data_args.packing),
    )
    return StageRun(trainer, len(train_features), data_stats, prompt_args, eval_examples=len(eval_features))


def token_loss_trainer(
    model_args: ModelArguments,
    finetuning_args: FinetuningArguments,
    training_args,
    tokenizer,
    train_dataset,
    eval_dataset,
    data_collator,
):
    """The model to train (LoRA, freeze or full, in sqltune's precision) inside an `SftTrainer`: the
    next-token loss on every labelled position. `stage=pt` trains with it too, labelling every token."""
    from transformers import ProgressCallback

    from sqltune.models import lean
    from sqltune.models.adapters import compute_under_autocast
    from sqltune.train import callbacks
    from sqltune.train.trainer import SftTrainer

    model, _ = load_policy(model_args, finetuning_args, training_args, trl=False)
    if half_precision(training_args):
        compute_under_autocast(model)
    lean.configure(model, training_args)
    if training_args.gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings: checkpointed layers still need grads
        training_args.gradient_checkpointing_kwargs = training_args.gradient_checkpointing_kwargs or {
            "use_reentrant": False
        }
    trainer = SftTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        processing_class=tokenizer,
        finetuning_args=finetuning_args,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(callbacks.TokenProgressCallback(trainer))
    return trainer
