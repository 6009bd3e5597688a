"""Multimodal SFT: sharegpt records with images, trained on a vision-language model.

`stage=sft` takes this path when the model's config has a `vision_config`
(`sqltune.models.multimodal.is_multimodal`). The data is LLaMA-Factory's multimodal format, so its
demo datasets load unchanged: a sharegpt record with an `images` list (files relative to the
dataset folder, or absolute) and one `<image>` placeholder in the user text per image, registered
with `"columns": {"messages": "conversations", "images": "images"}`.

Each sample is encoded as text SFT encodes it (`sqltune.models.encoding.encode_example`: the chat
template, labels on the last answer only) with `<image>` written as the processor's image token;
each image token is then replaced by the run of tokens the processor expands that image into, and
those positions stay unlabelled like the rest of the prompt. The processor's tensors
(`pixel_values`, and `image_sizes` or pixel masks where a model has them) travel with the sample
and are stacked by `MultimodalCollator`. The loss is `SftTrainer`'s, as in text SFT.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqltune.args import DataArguments, FinetuningArguments, ModelArguments
from sqltune.errors import DataError
from sqltune.models.encoding import IGNORE_INDEX
from sqltune.models.multimodal import LLAMA_FACTORY_IMAGE
from sqltune.models.templates import Template
from sqltune.train.stage import StageRun

if TYPE_CHECKING:
    from sqltune.train.data import Sample


def record_images(value: Any, texts: list[str], dataset_dir: Path, where: str) -> list[str]:
    """The image files of one record, as paths that exist; one `<image>` placeholder per image."""
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: images must be a list of image file paths")
    placeholders = sum(text.count(LLAMA_FACTORY_IMAGE) for text in texts)
    if placeholders != len(value):
        raise DataError(
            f"{where}: {placeholders} {LLAMA_FACTORY_IMAGE} placeholder(s) for {len(value)} image(s); "
            "give one placeholder per image"
        )
    paths = []
    for name in value:
        path = Path(name) if Path(name).is_absolute() else Path(dataset_dir) / name
        if not path.is_file():
            raise DataError(f"{where}: image file not found: {path}")
        paths.append(str(path))
    return paths


def encode_multimodal(
    sample: Sample, template: Template, processor, cache: dict | None = None
) -> tuple[dict, int]:
    """(features, answer tokens) of one sample: input ids with every image expanded, labels on the
    answer, and the processor's image tensors (`cache`: see `image_inputs`)."""
    from sqltune.models.encoding import encode_example
    from sqltune.models.multimodal import (
        expand_images,
        image_inputs,
        image_token_id,
        prompt_with_image_tokens,
    )

    prompt = prompt_with_image_tokens(sample.prompt, processor)
    ids, labels = encode_example(prompt, sample.response, template, processor.tokenizer, sample.system)
    expansions, tensors = image_inputs(processor, sample.images or [], cache)
    token_id = image_token_id(processor)
    input_ids = expand_images(ids, expansions, token_id)
    if input_ids is None:
        raise DataError(
            f"the chat template does not keep one {processor.image_token} per image "
            f"(images: {', '.join(sample.images or []) or 'none'})"
        )
    expanded_labels: list[int] = []
    widths = iter(len(expansion) for expansion in expansions)
    for token, label in zip(ids, labels):  # image positions are prompt: never labelled
        if token == token_id:
            expanded_labels += [IGNORE_INDEX] * next(widths)
        else:
            expanded_labels.append(label)
    answer = sum(label != IGNORE_INDEX for label in expanded_labels)
    return {"input_ids": input_ids, "labels": expanded_labels, **tensors}, answer


def encode_dataset(
    samples: list[Sample], template: Template, processor, cutoff_len: int
) -> tuple[list[dict], dict]:
    """Features of the samples that fit `cutoff_len` (an image cannot be shortened: a sample over it
    is dropped and counted), and the counts the run card keeps. The image tensors stay in memory,
    one copy per distinct image file."""
    from sqltune.train.data import EncodeStats

    stats = EncodeStats(samples=len(samples))
    features, answers = [], []
    images = 0
    cache: dict = {}
    for sample in samples:
        if getattr(sample, "messages", None) is not None:
            raise DataError("agent (tool-call) records are not available for vision-language models yet")
        encoded = encode_multimodal(sample, template, processor, cache)
        if len(encoded[0]["input_ids"]) > cutoff_len:
            stats.dropped_too_long += 1
            continue
        feature, answer = encoded
        features.append(feature)
        answers.append(answer)
        images += len(sample.images or [])
        stats.kept += 1
        stats.tokens += len(feature["input_ids"])
    stats.response_tokens = sum(answers)
    if answers:
        stats.response_tokens_p95 = sorted(answers)[min(len(answers) - 1, int(0.95 * len(answers)))]
    return features, {**stats.as_dict(), "images": images}


class MultimodalCollator:
    """Pads input ids (pad token), labels (IGNORE_INDEX) and the attention mask on the right, and
    concatenates every image tensor of the batch along its first dimension, sample after sample."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        batch: dict[str, Any] = {
            "input_ids": torch.full((len(features), longest), self.pad_token_id, dtype=torch.long),
            "labels": torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long),
            "attention_mask": torch.zeros((len(features), longest), dtype=torch.long),
        }
        for row, feature in enumerate(features):
            size = len(feature["input_ids"])
            batch["input_ids"][row, :size] = torch.as_tensor(feature["input_ids"])
            batch["labels"][row, :size] = torch.as_tensor(feature["labels"])
            batch["attention_mask"][row, :size] = 1
        keys = {key for f in features for key in f} - {"input_ids", "labels", "attention_mask"}
        for key in sorted(keys):
            batch[key] = torch.cat([f[key] for f in features if key in f])
        return batch


class _Features:
    """The encoded samples as a map-style dataset (tensors kept as they are)."""

    def __init__(self, features: list[dict]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]


def build(
    model_args: ModelArguments,
    data_args: DataArguments,
    finetuning_args: FinetuningArguments,
    training_args,
    template: Template,
    tokenizer,
) -> StageRun:
    """Multimodal SFT (module docstring): the trainer, and what the run card records."""
    from transformers import ProgressCallback

    from sqltune.errors import ConfigError
    from sqltune.models.adapters import compute_under_autocast
    from sqltune.models.loading import resolve_base
    from sqltune.models.multimodal import (
        apply_multimodal_finetuning,
        check_choices,
        load_processor,
        load_vision_model,
        part_prefixes,
    )
    from sqltune.train import callbacks
    from sqltune.train.data import read_samples
    from sqltune.train.stage import half_precision
    from sqltune.train.trainer import SftTrainer

    if data_args.packing or data_args.val_size or data_args.eval_dataset_names:
        raise ConfigError("multimodal SFT: packing, val_size and eval_dataset are not available")
    check_choices(finetuning_args, model_args)
    base = resolve_base(model_args)
    processor = load_processor(base, model_args.trust_remote_code)
    features: list[dict] = []
    data_stats: dict[str, dict] = {}
    for name in data_args.dataset_names:
        samples = read_samples(data_args.dataset_dir, name, data_args.max_samples)
        encoded, data_stats[name] = encode_dataset(samples, template, processor, data_args.cutoff_len)
        features += encoded
    if not features:
        raise DataError(f"no example of {data_args.dataset} fits cutoff_len={data_args.cutoff_len}")
    half = half_precision(training_args)
    model = load_vision_model(model_args, dtype=half if half and model_args.torch_dtype == "auto" else None)
    model = apply_multimodal_finetuning(model, finetuning_args, model_args)
    if half:
        compute_under_autocast(model)
    if training_args.gradient_checkpointing:
        model.enable_input_require_grads()
        training_args.gradient_checkpointing_kwargs = training_args.gradient_checkpointing_kwargs or {
            "use_reentrant": False
        }
    trainer = SftTrainer(
        model=model,
        args=training_args,
        train_dataset=_Features(features),
        data_collator=MultimodalCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,  # saved with the run: tokenizer, chat template, image settings
        finetuning_args=finetuning_args,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(callbacks.TokenProgressCallback(trainer))
    unwrapped = model.get_base_model() if hasattr(model, "get_base_model") else model
    settings = {
        "multimodal": True,
        "freeze_vision_tower": finetuning_args.freeze_vision_tower,
        "train_mm_proj_only": finetuning_args.train_mm_proj_only,
        "image_token": processor.image_token,
        "vision_tower": part_prefixes(unwrapped, "vision"),
        "projector": part_prefixes(unwrapped, "projector"),
    }
    return StageRun(trainer, len(features), data_stats, None, settings=settings)
