"""Vision-language models: loading them, choosing what trains, and answering with images.

A model directory whose config has a `vision_config` (LLaVA, Idefics3/SmolVLM, Qwen2-VL, ...) is a
vision-language model. It loads with transformers' `AutoModelForImageTextToText` and its
`AutoProcessor`, which turns images into pixel tensors and a placeholder into the model's own run
of image tokens. Such a model has three parts: a vision encoder ("vision tower"), a projector that
maps image features into the language model's embedding space, and the language model. What
trains follows LLaMA-Factory's keys (`sqltune.args.FinetuningArguments`):

* `finetuning_type=lora`: LoRA on the language model's linear layers; with
  `freeze_vision_tower=false` on the vision encoder's too. The projector stays as it is.
* `finetuning_type=full`: every weight but the vision encoder's (`freeze_vision_tower=true`, the
  default) or every weight.
* `train_mm_proj_only=true` (with `full`): the projector alone, the usual first stage of teaching
  a language model to read a new vision encoder.

The parts are found by the attribute names transformers gives them (`PARTS`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sqltune.args import FinetuningArguments, ModelArguments
from sqltune.data.prompts import Prompt
from sqltune.errors import ConfigError
from sqltune.runcard import RunCard

# model options of text models that this path does not apply
MODEL_OPTIONS_REFUSED = ("quantization_bit", "shift_attn", "use_unsloth", "rope_scaling", "mixture_of_depths")
LLAMA_FACTORY_IMAGE = "<image>"  # the placeholder of LLaMA-Factory's multimodal records
# the attribute names of each part in transformers' vision-language models
PARTS = {
    "vision": ("vision_tower", "vision_model", "visual", "vision_encoder"),
    "projector": ("multi_modal_projector", "connector", "mm_projector", "merger"),
    "language": ("language_model", "text_model"),
}


def is_multimodal(path: str | Path | None) -> bool:
    """Whether the model directory holds a vision-language model (its config has a vision_config)."""
    if not path or not (Path(path) / "config.json").is_file():
        return False
    from sqltune.files import read_json

    return "vision_config" in read_json(Path(path) / "config.json", "model config")


def is_multimodal_run(card: RunCard) -> bool:
    """Whether a run (or export) was trained from a vision-language model."""
    return bool(card.stage_settings.get("multimodal")) or is_multimodal(card.base_model)


def load_processor(path: str | Path, trust_remote_code: bool = False):
    """The model's processor; its tokenizer pads on the right and has a pad token (EOS if none)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if getattr(processor, "image_token", None) is None:
        raise ConfigError(f"{path}: the processor names no image token; is it a vision-language model?")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


def load_vision_model(model_args: ModelArguments, path: str | None = None, dtype: str | None = None):
    """The vision-language model of `model_args` (or `path`), in `dtype` (default: torch_dtype)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from sqltune.models.loading import resolve_base

    refused = [key for key in MODEL_OPTIONS_REFUSED if getattr(model_args, key, None)]
    if refused:
        raise ConfigError(f"{', '.join(refused)}: not available for vision-language models")
    dtype = dtype or model_args.torch_dtype
    kwargs: dict[str, Any] = {
        "dtype": dtype if dtype == "auto" else getattr(torch, dtype),
        "trust_remote_code": model_args.trust_remote_code,
    }
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    return AutoModelForImageTextToText.from_pretrained(path or resolve_base(model_args), **kwargs)


def part_prefixes(model, part: str) -> list[str]:
    """Dotted names of the modules that make up `part` (vision, projector, language), outermost
    only: the projector inside Qwen2-VL's vision encoder counts as projector, not vision."""
    names = PARTS[part]
    found: list[str] = []
    for name, _ in model.named_modules():
        if name.rsplit(".", 1)[-1] in names and not any(name.startswith(f + ".") for f in found):
            found.append(name)
    return found


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def lora_target_modules(model, finetuning: FinetuningArguments) -> list[str]:
    """Full names of the linear layers LoRA adapts: the language model's (and, with
    `freeze_vision_tower=false`, the vision encoder's), never the projector's or the LM head."""
    import torch

    language, vision = part_prefixes(model, "language"), part_prefixes(model, "vision")
    projector = part_prefixes(model, "projector")
    if not language:
        raise ConfigError("multimodal: cannot find the language model inside this model")
    scopes = language + ([] if finetuning.freeze_vision_tower else vision)
    wanted = finetuning.lora_targets
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and _inside(name, scopes)
        and not _inside(name, projector)
        and (wanted == ["all"] or name.rsplit(".", 1)[-1] in wanted)
    ]
    if not targets:
        raise ConfigError(
            f"lora_target: no linear layer named {finetuning.lora_target} in the language model"
        )
    return targets


def check_choices(finetuning: FinetuningArguments, model_args: ModelArguments) -> None:
    """Refuse, before anything loads, what this path does not do for vision-language models."""
    if finetuning.finetuning_type == "freeze":
        raise ConfigError(
            "finetuning_type=freeze is not available for vision-language models: use lora or full"
        )
    unsupported = {
        "lora_layers": finetuning.lora_layers is not None,
        "additional_target": bool(finetuning.additional_target),
        "pissa_init": finetuning.pissa_init,
        "loftq_init": finetuning.loftq_init,
        "use_llama_pro": finetuning.use_llama_pro,
        **{key: bool(getattr(model_args, key, None)) for key in MODEL_OPTIONS_REFUSED},
    }
    refused = [key for key, given in unsupported.items() if given]
    if refused:
        raise ConfigError(f"{', '.join(refused)}: not available for vision-language models")


def apply_multimodal_finetuning(model, finetuning: FinetuningArguments, model_args: ModelArguments):
    """Make the parts `finetuning` names trainable (module docstring); trained weights in float32."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from sqltune.models.adapters import trainable_in_float32

    check_choices(finetuning, model_args)
    vision, projector = part_prefixes(model, "vision"), part_prefixes(model, "projector")
    if finetuning.finetuning_type == "lora":
        if model_args.adapter_name_or_path:
            return PeftModel.from_pretrained(model, model_args.adapter_name_or_path, is_trainable=True)
        config = LoraConfig(
            r=finetuning.lora_rank,
            lora_alpha=finetuning.lora_alpha,
            lora_dropout=finetuning.lora_dropout,
            target_modules=lora_target_modules(model, finetuning),
            use_dora=finetuning.use_dora,
            use_rslora=finetuning.use_rslora,
        )
        return trainable_in_float32(get_peft_model(model, config))
    if model_args.adapter_name_or_path:
        raise ConfigError("adapter_name_or_path needs finetuning_type=lora")
    if finetuning.train_mm_proj_only and not projector:
        raise ConfigError("train_mm_proj_only: cannot find the multimodal projector inside this model")
    for name, param in model.named_parameters():
        if finetuning.train_mm_proj_only:
            param.requires_grad_(_inside(name, projector))
        else:
            frozen = _inside(name, vision) and not _inside(name, projector)
            param.requires_grad_(not (finetuning.freeze_vision_tower and frozen))
    return trainable_in_float32(model)


def load_for_inference(run_dir: str | Path, **overrides: Any):
    """(model, processor, card) of a multimodal run or export, in eval mode: the base model with
    the run's LoRA adapter, or the run's own weights (full)."""
    from peft import PeftModel

    from sqltune.models.loading import has_cuda, model_arguments_from_card

    run_dir = Path(run_dir)
    card = RunCard.load(run_dir)
    dtype = overrides.pop("torch_dtype", None)
    model_args = model_arguments_from_card(card, **overrides)
    if (run_dir / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(load_vision_model(model_args, dtype=dtype), str(run_dir))
    else:
        model = load_vision_model(model_args, path=str(run_dir), dtype=dtype)
    if has_cuda():
        model = model.to("cuda")
    return model.eval(), load_processor(run_dir, model_args.trust_remote_code), card


def with_image_token(text: str, processor) -> str:
    """LLaMA-Factory's `<image>` placeholder written as the processor's own image token."""
    token = processor.image_token
    return text if token == LLAMA_FACTORY_IMAGE else text.replace(LLAMA_FACTORY_IMAGE, token)


def process_image(processor, path: str) -> tuple[list[int], dict[str, Any]]:
    """The token ids one image file's placeholder expands to, and the processor's tensors for it
    (pixel_values and whatever else the model takes: image_sizes, pixel masks)."""
    import torch
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    out = processor(text=processor.image_token, images=[image], return_tensors="pt", add_special_tokens=False)
    tensors = {
        key: value
        for key, value in out.items()
        if key not in ("input_ids", "attention_mask", "token_type_ids") and torch.is_tensor(value)
    }
    return out["input_ids"][0].tolist(), tensors


def image_inputs(
    processor, paths: list[str], cache: dict[str, tuple[list[int], dict]] | None = None
) -> tuple[list[list[int]], dict[str, Any]]:
    """`process_image` for each file (kept in `cache` by path when given, so records that show the
    same image share one copy of its tensors), the tensors stacked along the first dimension, image
    after image."""
    import torch

    processed = []
    for path in paths:
        if cache is None or path not in cache:
            done = process_image(processor, path)
            if cache is None:
                processed.append(done)
                continue
            cache[path] = done
        processed.append(cache[path])
    tensors: dict[str, list] = {}
    for _, parts in processed:
        for key, value in parts.items():
            tensors.setdefault(key, []).append(value)
    stacked = {key: values[0] if len(values) == 1 else torch.cat(values) for key, values in tensors.items()}
    return [expansion for expansion, _ in processed], stacked


def expand_images(ids: list[int], expansions: list[list[int]], image_token_id: int) -> list[int] | None:
    """`ids` with the k-th image token replaced by the k-th image's expansion; None when the counts
    differ (a placeholder the template itself wrote, or one lost to the template)."""
    out: list[int] = []
    seen = 0
    for token in ids:
        if token == image_token_id:
            if seen == len(expansions):
                return None
            out += expansions[seen]
            seen += 1
        else:
            out.append(token)
    return out if seen == len(expansions) else None


def prompt_with_image_tokens(prompt: Prompt, processor) -> Prompt:
    """The prompt with every `<image>` placeholder written as the processor's image token."""
    return dataclasses.replace(
        prompt,
        instruction=with_image_token(prompt.instruction, processor),
        input=with_image_token(prompt.input, processor),
        history=[(with_image_token(q, processor), a) for q, a in prompt.history],
    )


def image_token_id(processor) -> int:
    token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    if not isinstance(token_id, int) or token_id == processor.tokenizer.unk_token_id:
        raise ConfigError(
            f"the tokenizer has no token {processor.image_token!r} (the processor's image token)"
        )
    return token_id


@dataclasses.dataclass
class ImageAnswer:
    text: str
    new_tokens: int
    prompt_tokens: int
    seconds: float


def answer_with_images(
    model, processor, prompt_ids: list[int], image_paths: list[str], stop_ids: list[int], max_new_tokens: int
) -> ImageAnswer:
    """Greedy answer to one prompt (token ids whose image tokens are not expanded yet) and its images."""
    import time

    import torch

    began = time.perf_counter()
    expansions, tensors = image_inputs(processor, image_paths)
    ids = expand_images(prompt_ids, expansions, image_token_id(processor))
    if ids is None:
        raise ConfigError("the prompt's image placeholders do not match its images")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    inputs = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in tensors.items()}
    input_ids = torch.tensor([ids], device=device)
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop_ids,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
    new = output[0, input_ids.shape[1] :].tolist()
    kept = new
    for index, token in enumerate(new):
        if token in stop_ids:
            kept = new[:index]
            break
    text = processor.tokenizer.decode(kept, skip_special_tokens=True)
    return ImageAnswer(text, len(new), len(ids), time.perf_counter() - began)
