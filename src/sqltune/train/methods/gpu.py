"""Speed and memory methods that lean on GPU kernels or other quantisers: Unsloth, Liger, FSDP, and
the quantisers of `quantization_method` (bitsandbytes, HQQ, EETQ).

Each key is checked before anything is loaded, and what cannot run here fails with one line
(`sqltune.errors.ConfigError`) that names the reason: a missing CUDA GPU, a package that is not
installed, or a library version that lacks the route.

- `use_unsloth=true`: the model is loaded through Unsloth's `FastLanguageModel` (its fused kernels);
  CUDA GPU and the `unsloth` package (the GPU is checked first).
- `enable_liger_kernel=true`: transformers' `use_liger_kernel` (Liger's Triton kernels patched into
  the model by the Trainer); CUDA GPU and the `liger-kernel` package.
- `fsdp=...` with `fsdp_config=`: transformers/accelerate Fully Sharded Data Parallel, the
  alternative to DeepSpeed (refused together with it); runs with torchrun processes on CPU (gloo) too.
- `quantization_method=hqq|eetq` with `quantization_bit=`: QLoRA on other quantisers than
  bitsandbytes, through transformers' `HqqConfig` / `EetqConfig` (`quantization_config`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from sqltune.errors import ConfigError


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def quantizer_implemented(method: str) -> bool:
    """Whether this transformers can quantise weights with `method` while loading: version 5 moved
    quantisation into weight-loading operations, and a quantiser without them raises
    NotImplementedError deep inside `from_pretrained`."""
    from transformers.quantizers import AutoHfQuantizer
    from transformers.quantizers.auto import AUTO_QUANTIZER_MAPPING
    from transformers.quantizers.base import HfQuantizer

    del AutoHfQuantizer  # imported for its mapping's side effects only
    quantizer = AUTO_QUANTIZER_MAPPING.get(method)
    return quantizer is not None and quantizer.get_quantize_ops is not HfQuantizer.get_quantize_ops


def require_quantizer(method: str, bits: int | None) -> None:
    """Fail with one line when `quantization_method` cannot quantise here (before any loading)."""
    from sqltune.models.loading import require

    if method == "bitsandbytes":
        require(f"quantization_bit={bits}", ("bitsandbytes",), gpu=True, extra="'sqltune[gpu]'")
    elif method == "hqq":
        require("quantization_method=hqq", ("hqq",), extra="hqq --no-deps")
        if not quantizer_implemented("hqq"):
            raise ConfigError(
                f"quantization_method=hqq: transformers {_transformers_version()} cannot quantise with HQQ "
                "while loading (its HQQ quantiser is not implemented in this version); use bitsandbytes"
            )
    elif method == "eetq":
        if bits != 8:
            raise ConfigError("quantization_method=eetq quantises to 8 bits only: quantization_bit=8")
        if not importlib.util.find_spec("eetq"):
            raise ConfigError(
                "quantization_method=eetq needs the package eetq, which the package index does not offer "
                "for this Python (pip: no matching distribution); build it from source on a CUDA machine"
            )
        require("quantization_method=eetq", gpu=True)


def quantizer_config(method: str, bits: int) -> Any:
    """transformers' quantisation config of an HQQ or EETQ `method` (after `require_quantizer`)."""
    if method == "hqq":
        from transformers import HqqConfig

        return HqqConfig(nbits=bits, group_size=64)
    from transformers import EetqConfig

    return EetqConfig("int8")


def check(model_args, training_args) -> None:
    """Unsloth, Liger and FSDP: what they need, checked before models are loaded or processes
    launched; switches transformers' `use_liger_kernel` on for `enable_liger_kernel`, and sqltune's
    `lean_activations` off under Unsloth or Liger."""
    from sqltune.models.loading import require

    if model_args.use_unsloth:
        require("use_unsloth=true", ("unsloth",), gpu=True, extra="unsloth")
        if model_args.shift_attn or model_args.mixture_of_depths:
            raise ConfigError(
                "use_unsloth=true brings its own attention: leave out shift_attn and mixture_of_depths"
            )
    if model_args.enable_liger_kernel or training_args.use_liger_kernel:
        require(
            "enable_liger_kernel=true (Liger's Triton kernels)",
            ("liger_kernel",),
            gpu=True,
            extra="liger-kernel",
        )
        training_args.use_liger_kernel = True
    if model_args.use_unsloth or training_args.use_liger_kernel:
        training_args.lean_activations = False  # their kernels replace the same modules
    if training_args.fsdp:
        if training_args.deepspeed:
            raise ConfigError("fsdp and deepspeed are two ways to shard training: give only one of them")
        if model_args.quantization_bit:
            raise ConfigError("fsdp does not shard quantised weights here: leave out quantization_bit")


def load_with_unsloth(model_args, path: str, kwargs: dict[str, Any]):
    """The model loaded through Unsloth's FastLanguageModel (its kernels patched in); LoRA is added
    afterwards by the stage as for any model. 4-bit bitsandbytes is Unsloth's own `load_in_4bit`."""
    from unsloth import FastLanguageModel

    model, _ = FastLanguageModel.from_pretrained(
        model_name=path,
        dtype=None if kwargs.get("dtype") == "auto" else kwargs.get("dtype"),
        load_in_4bit=model_args.quantization_bit == 4,
        load_in_8bit=model_args.quantization_bit == 8,
        trust_remote_code=model_args.trust_remote_code,
    )
    return model


def settings(model_args, training_args) -> dict[str, Any]:
    """What the run card records of these methods (nothing when none is on)."""
    out: dict[str, Any] = {}
    if model_args.use_unsloth:
        out["unsloth"] = True
    if training_args.use_liger_kernel:
        out["liger_kernel"] = True
    if training_args.fsdp:
        # what accelerate's FSDP plugin received (transformers' reading of fsdp and fsdp_config)
        plugin = getattr(training_args, "fsdp_plugin_args", None) or training_args.fsdp_config or {}
        plain = (str, int, float, bool, list, type(None))
        out["fsdp"] = {
            key: value if isinstance(value, plain) else str(value) for key, value in plugin.items()
        }
    if model_args.quantization_bit:
        out["quantization"] = f"{model_args.quantization_method} {model_args.quantization_bit}-bit"
    return out
