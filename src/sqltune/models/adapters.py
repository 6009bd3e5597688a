"""What a run trains: LoRA adapters (peft), the last layers (freeze), or every weight (full).

LoRA and its variants (DoRA, rsLoRA, PiSSA and LoftQ initialisation) are peft's; this module only
maps sqltune's arguments onto a `LoraConfig`. QLoRA is LoRA on a base model loaded with
`quantization_bit`. LoRA+ (a larger learning rate for the B matrices) is an optimizer built by
peft's `create_loraplus_optimizer` (see `sqltune.train.trainer`).
"""

from __future__ import annotations

import re

from sqltune.args import FinetuningArguments, ModelArguments
from sqltune.errors import ConfigError


def layer_count(model) -> int:
    count = getattr(model.config, "num_hidden_layers", None)
    if not count:
        raise ConfigError("the model's config has no num_hidden_layers: cannot choose layers to train")
    return int(count)


def lora_config(model, finetuning: FinetuningArguments, model_args: ModelArguments):
    """peft's LoraConfig for the run; `lora_target=all` means every linear layer except the head."""
    from peft import LoftQConfig, LoraConfig, TaskType

    targets = finetuning.lora_targets
    target_modules: str | list[str] = "all-linear" if targets == ["all"] else targets
    if target_modules == "all-linear" and (finetuning.lora_layers is not None or finetuning.use_llama_pro):
        target_modules = linear_layer_names(model)  # peft chooses layers only from a list of names
    elif target_modules != "all-linear":
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise ConfigError(f"lora_target: no module named {', '.join(unknown)} in this model")
    init: bool | str = True
    loftq = None
    if finetuning.pissa_init:
        init = "pissa" if finetuning.pissa_iter < 0 else f"pissa_niter_{finetuning.pissa_iter}"
    if finetuning.loftq_init:
        if model_args.quantization_bit:
            raise ConfigError("loftq_init replaces quantization_bit: LoftQ quantises the base itself")
        init, loftq = "loftq", LoftQConfig(loftq_bits=4)
    layers = (
        {"layers_to_transform": llama_pro_layers(model, finetuning), "layers_pattern": "layers"}
        if finetuning.use_llama_pro
        else lora_layer_options(model, finetuning.lora_layers)
    )
    return LoraConfig(
        **layers,
        task_type=TaskType.CAUSAL_LM,
        r=finetuning.lora_rank,
        lora_alpha=finetuning.lora_alpha,
        lora_dropout=finetuning.lora_dropout,
        target_modules=target_modules,
        modules_to_save=finetuning.additional_targets or None,
        use_dora=finetuning.use_dora,
        use_rslora=finetuning.use_rslora,
        init_lora_weights=init,
        loftq_config=loftq or {},
    )


def linear_layer_names(model) -> list[str]:
    """The names of every linear layer inside the decoder layers (what `all-linear` adapts)."""
    import torch

    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".layers." in name
        }
    )


def lora_layer_options(model, last: int | None) -> dict:
    """peft's `layers_to_transform` for LoRA on the last `last` decoder layers (none: every layer).
    Below the lowest adapted layer nothing needs a gradient, so autograd records nothing there and
    the backward pass stops at that layer."""
    if last is None:
        return {}
    total = layer_count(model)
    if not 1 <= last <= total:
        raise ConfigError(f"lora_layers: must be between 1 and {total}, the model's layer count")
    return {"layers_to_transform": list(range(total - last, total)), "layers_pattern": "layers"}


def llama_pro_layers(model, finetuning: FinetuningArguments) -> list[int]:
    """`use_llama_pro`: the decoder layers `sqltune expand` inserted (`freeze_trainable_layers` of them)."""
    from sqltune.train.methods.expand import expanded_layer_ids

    return expanded_layer_ids(layer_count(model), finetuning.freeze_trainable_layers)


def apply_lora(model, finetuning: FinetuningArguments, model_args: ModelArguments):
    """Wrap the model with trainable LoRA adapters (a new one, or `adapter_name_or_path` to continue)."""
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    if model_args.quantization_bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if model_args.adapter_name_or_path:
        return PeftModel.from_pretrained(model, model_args.adapter_name_or_path, is_trainable=True)
    return get_peft_model(model, lora_config(model, finetuning, model_args))


def apply_freeze(model, finetuning: FinetuningArguments):
    """Train only the last (or first, when negative) `freeze_trainable_layers` decoder layers (with
    `use_llama_pro`: the expanded ones), limited to `freeze_trainable_modules`, plus any
    `freeze_extra_modules` outside the layers."""
    total = layer_count(model)
    count = finetuning.freeze_trainable_layers
    if count == 0 or abs(count) > total:
        raise ConfigError(f"freeze_trainable_layers: must be between 1 and {total} (or -1 and -{total})")
    if finetuning.use_llama_pro:
        layers = llama_pro_layers(model, finetuning)
    else:
        layers = range(total - count, total) if count > 0 else range(-count)
    modules = [m.strip() for m in finetuning.freeze_trainable_modules.split(",") if m.strip()]
    extra = [m.strip() for m in (finetuning.freeze_extra_modules or "").split(",") if m.strip()]
    layer_pattern = re.compile(r"\.layers\.(\d+)\.(.*)")
    matched = 0
    for name, param in model.named_parameters():
        found = layer_pattern.search(name)
        if found:
            in_layer = int(found.group(1)) in layers
            train = in_layer and (
                modules == ["all"] or any(found.group(2).startswith(m + ".") for m in modules)
            )
        else:
            train = any(f".{m}." in f".{name}" for m in extra)
        param.requires_grad_(train)
        matched += train
    if not matched:
        raise ConfigError("finetuning_type=freeze: no parameter matches freeze_trainable_modules")
    return model


def apply_finetuning(model, finetuning: FinetuningArguments, model_args: ModelArguments):
    """Make the right parameters trainable for `finetuning_type`; trainable weights are kept in
    float32 (a half-precision base stays half precision where it is frozen)."""
    if model_args.quantization_bit and finetuning.finetuning_type != "lora":
        raise ConfigError(
            "quantization_bit needs finetuning_type=lora (QLoRA): quantised weights cannot be trained"
        )
    if finetuning.finetuning_type == "lora":
        model = apply_lora(model, finetuning, model_args)
    elif model_args.adapter_name_or_path:
        raise ConfigError("adapter_name_or_path needs finetuning_type=lora")
    elif finetuning.finetuning_type == "freeze":
        model = apply_freeze(model, finetuning)
    else:
        model.requires_grad_(True)
    return trainable_in_float32(model)


def trainable_in_float32(model):
    """Keep every trainable weight in float32 (updates below half precision's resolution are not
    lost); frozen weights stay in the dtype they were loaded in."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()
    return model


def compute_under_autocast(model) -> None:
    """Let LoRA layers take their half-precision input as it is. peft otherwise casts the input of
    every adapter to the adapter's float32, and autocast casts it back: two extra activation copies
    per adapted layer kept for the backward pass. Under autocast the adapter matmuls run in half
    precision anyway (their float32 weights are cast, once per step)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


def trainable_summary(model) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "all_params": total}
