"""Loading tokenizers and models, for training and for inference.

`model_name_or_path` is a model directory, a `.gguf` file (dequantised once into the cache) or the
embedded default `smollm2-135m` (see `sqltune.models.embedded`). On top of transformers'
`from_pretrained` this module adds the project's options (dtype, attention kernel, RoPE scaling,
bitsandbytes quantisation, pre-quantised GPTQ/AWQ/AQLM checkpoints) with one-line errors when a
choice needs a GPU or a package that is not installed, instead of a traceback deep inside a library.

`load_for_inference(run_dir)` is the entry point of prediction and export: it reads the run card,
loads the base model and attaches the adapter (LoRA) or loads the trained weights (freeze/full).
A reward-model run (`stage=rm`) is refused there (`refuse_reward_model`); it loads with
`sqltune.train.reward_model.load_reward_model`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

from sqltune.args import ModelArguments
from sqltune.errors import ConfigError
from sqltune.models.embedded import resolve_model_path
from sqltune.runcard import RUN_CARD, RunCard

# quant_method in a checkpoint's config -> packages (any one suffices) that transformers needs for it
PREQUANTIZED = {"gptq": ("gptqmodel",), "awq": ("awq", "gptqmodel"), "aqlm": ("aqlm",)}


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def require(what: str, packages: tuple[str, ...] = (), gpu: bool = False, extra: str = "") -> None:
    """Fail with one clear line when `what` needs a CUDA GPU or a package that is missing."""
    if gpu and not has_cuda():
        raise ConfigError(f"{what} needs a CUDA GPU, and none is visible")
    if packages and not any(importlib.util.find_spec(p) for p in packages):
        hint = f" (pip install {extra})" if extra else ""
        raise ConfigError(f"{what} needs the package {' or '.join(packages)}{hint}")


def require_quantization(model_args: ModelArguments) -> None:
    """`quantization_bit` by `quantization_method`: bitsandbytes runs only on a CUDA GPU with the
    package; HQQ and EETQ as `sqltune.train.methods.gpu.require_quantizer` says."""
    if model_args.quantization_bit:
        from sqltune.train.methods.gpu import require_quantizer

        require_quantizer(model_args.quantization_method, model_args.quantization_bit)


def resolve_base(model_args: ModelArguments) -> str:
    """The loadable base model. A GPU-only choice is checked first, so that a GPU recipe on a
    machine without one stops at once with what it needs, not after finding or loading a model."""
    require_quantization(model_args)
    return resolve_model_path(model_args.model_name_or_path)


def load_tokenizer(model_args: ModelArguments, path: str | None = None):
    """The model's tokenizer, padded on the right, with a pad token (the EOS when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path or resolve_base(model_args), trust_remote_code=model_args.trust_remote_code
    )
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def rope_parameters(config, kind: str, factor: float) -> dict:
    """The config's RoPE parameters with `kind` scaling by `factor` (transformers 5 `rope_parameters`)."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.update(rope_type=kind, factor=float(factor))
    if kind in ("dynamic", "yarn", "llama3"):
        params.setdefault("original_max_position_embeddings", config.max_position_embeddings)
    if kind == "llama3":
        params.setdefault("low_freq_factor", 1.0)
        params.setdefault("high_freq_factor", 4.0)
    return params


def quantization_config(model_args: ModelArguments, config) -> Any | None:
    """A bitsandbytes config for `quantization_bit`, after checking GPU and packages; checks the
    packages a pre-quantised (GPTQ/AWQ/AQLM) checkpoint needs, whose own config transformers uses."""
    existing = getattr(config, "quantization_config", None)
    if existing:
        method = existing.get("quant_method") if isinstance(existing, dict) else existing.quant_method
        method = str(getattr(method, "value", method))
        if model_args.quantization_bit:
            raise ConfigError(f"the model is already quantised ({method}); remove quantization_bit")
        if method in PREQUANTIZED:
            require(
                f"a {method.upper()} checkpoint",
                PREQUANTIZED[method],
                gpu=True,
                extra=PREQUANTIZED[method][0],
            )
        return None
    if not model_args.quantization_bit:
        return None
    require_quantization(model_args)
    if model_args.quantization_method != "bitsandbytes":  # hqq, eetq
        from sqltune.train.methods.gpu import quantizer_config

        return quantizer_config(model_args.quantization_method, model_args.quantization_bit)
    import torch
    from transformers import BitsAndBytesConfig

    if model_args.quantization_bit == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model_args.quantization_type,
        bnb_4bit_use_double_quant=model_args.double_quantization,
        bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16,
    )


def load_model(model_args: ModelArguments, path: str | None = None, num_labels: int | None = None):
    """The causal LM with the requested dtype, attention kernel (`shift_attn`: S2-Attn, which acts in
    training mode only), RoPE scaling and quantisation; with
    `num_labels`, the same body under a linear head of that many outputs instead of the LM head
    (`AutoModelForSequenceClassification`: a reward model has one)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    path = path or resolve_base(model_args)
    config = AutoConfig.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
    if hasattr(config, "vision_config"):  # the multimodal path loads these (sqltune.models.multimodal)
        raise ConfigError(
            f"{path} is a vision-language model: sqltune trains it with stage=sft and runs it with "
            "predict and export only (see docs/training.md, Multimodal SFT)"
        )
    if num_labels is not None:
        config.num_labels = num_labels
    if model_args.rope_scaling:
        config.rope_parameters = rope_parameters(config, model_args.rope_scaling, model_args.rope_factor)
        config.max_position_embeddings = int(config.max_position_embeddings * model_args.rope_factor)
    kwargs: dict[str, Any] = {"config": config, "trust_remote_code": model_args.trust_remote_code}
    kwargs["dtype"] = (
        model_args.torch_dtype if model_args.torch_dtype == "auto" else getattr(torch, model_args.torch_dtype)
    )
    if model_args.attn_implementation:
        if model_args.attn_implementation == "flash_attention_2":
            require("attn_implementation=flash_attention_2", ("flash_attn",), gpu=True, extra="flash-attn")
        kwargs["attn_implementation"] = model_args.attn_implementation
    quant = quantization_config(model_args, config)
    if quant is not None:
        import os

        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    auto_class = AutoModelForCausalLM if num_labels is None else AutoModelForSequenceClassification
    if getattr(model_args, "use_unsloth", False) and num_labels is None:
        from sqltune.train.methods.gpu import load_with_unsloth

        return load_with_unsloth(model_args, path, kwargs)
    if not model_args.shift_attn:
        return auto_class.from_pretrained(path, **kwargs)
    from sqltune.train.methods.shift_attn import apply_shift_attn, check_supported

    check_supported(config)  # before the weights are read
    return apply_shift_attn(auto_class.from_pretrained(path, **kwargs), model_args.group_size_ratio)


def refuse_reward_model(card: RunCard, run_dir: str | Path) -> None:
    """A reward model (`stage=rm`) scores answers and writes none: every place that loads a run as a
    model that generates SQL (predict, ask, export, a later stage's starting point) asks here first."""
    if card.stage == "rm":
        raise ConfigError(
            f"{run_dir} is a reward model (stage=rm): it scores answers and cannot write SQL; "
            f"give it to stage=ppo as reward_model={run_dir}"
        )


def model_arguments_from_card(card: RunCard, **overrides: Any) -> ModelArguments:
    """The ModelArguments a run was trained with, pointed at its base model (plus overrides)."""
    names = {f.name for f in dataclasses.fields(ModelArguments)}
    saved = {k: v for k, v in card.arguments.items() if k in names}
    saved.update(model_name_or_path=card.base_model, adapter_name_or_path=None, template=card.template)
    saved.update(overrides)
    if not saved.get("quantization_bit"):  # e.g. export loads unquantised: no quantiser either
        saved["quantization_method"] = "bitsandbytes"
    return ModelArguments(**saved)


def load_for_inference(source: str | Path | ModelArguments, **overrides: Any):
    """Load a trained model for generation: returns `(model, tokenizer, card)` in eval mode.

    `source` is a run directory (with `sqltune_run.json`): the base model named by the card is
    loaded with the run's dtype/attention/quantisation options (any `ModelArguments` field in
    `overrides` wins, e.g. `torch_dtype="bfloat16"`), and a LoRA adapter in the run directory is
    attached with peft; a freeze/full run directory is loaded as a whole model. The tokenizer is the
    one saved in the run directory and `card.template` names the template to encode prompts with.

    `source` may instead be `ModelArguments` (an untrained base model, with an optional
    `adapter_name_or_path`); `card` is then the adapter's run card when it has one, else None.
    The tokenizer pads on the right; set `tokenizer.padding_side = "left"` for batched generation.
    """
    from peft import PeftModel

    if isinstance(source, ModelArguments):
        adapter = source.adapter_name_or_path
        card = RunCard.load(adapter) if adapter and (Path(adapter) / RUN_CARD).is_file() else None
        if card is not None:
            refuse_reward_model(card, adapter)
        model = load_model(source)
        tokenizer = load_tokenizer(source)
        if adapter:
            model = PeftModel.from_pretrained(model, adapter)
        return model.eval(), tokenizer, card
    run_dir = Path(source)
    card = RunCard.load(run_dir)
    refuse_reward_model(card, run_dir)
    # shift_attn is a training-time attention and Unsloth a training-time kernel set: a trained
    # model attends as usual
    model_args = model_arguments_from_card(card, **{"shift_attn": False, "use_unsloth": False, **overrides})
    tokenizer = load_tokenizer(model_args, path=str(run_dir))
    if (run_dir / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(load_model(model_args), str(run_dir))
    else:  # the saved config already holds any RoPE scaling the run used
        model = load_model(dataclasses.replace(model_args, rope_scaling=None), path=str(run_dir))
    if has_cuda() and getattr(model, "hf_device_map", None) is None:
        model = model.to("cuda")
    return model.eval(), tokenizer, card
