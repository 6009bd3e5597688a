"""Leaner activations for training: what the backward pass keeps, without recomputing matmuls.

Measured with `bench/train_memory.py` (SmolLM2-135M, LoRA, bf16, batch 8 x 512), a training step
keeps 3.2 GB for its backward pass with the model's own modules, and much of it is the output of
cheap element-wise work or a second copy of a tensor kept anyway:

* RMSNorm keeps its input upcast to float32 (540 MB over 60 norms). `rms_norm` keeps one float32
  scale per token and its output, which the next layer's input projections keep anyway (their
  LoRA weight gradients need it), and recovers the normalised values from it (output / weight; a
  norm whose weight holds a zero keeps its input instead).
* The SwiGLU MLP keeps the gate, SiLU(gate) and the up projection (1.1 GB), and the down
  projection's LoRA keeps SiLU(gate) * up (360 MB). `swiglu` keeps the gate and the up projection
  only; SiLU is recomputed, and the down projection's input is recomputed from them in the
  backward pass (saved-tensor hooks) unless gradient checkpointing recomputes the layer anyway.
* Grouped-query attention repeats every key/value head for the query heads that share it before
  calling SDPA whenever there is a padding mask, and the repeated copies are kept (270 MB where
  90 MB would do). `grouped_attention` lets SDPA read the shared heads (`enable_gqa`); CPU only,
  as GPU kernels without native GQA support would fall back to the slow path.

Together: 1.66 GB kept instead of 3.2. The element-wise math of the norm and the MLP runs, on the
CPU, as kernels fused by torch.compile (`lean_fused_kernels`, see `_Kernels`): 12% faster steps.

`use_lean_activations(model)` switches the modules of the model families whose code is exactly
this (Llama, Qwen2/3, Mistral) and leaves every other module as it is. Results are the same up to
float rounding (tests compare gradients with the stock modules).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

ATTENTION_NAME = "sqltune_gqa"
FAMILIES = ("Llama", "Qwen2", "Qwen3", "Mistral")
NORMS = frozenset(f"{family}RMSNorm" for family in FAMILIES)
MLPS = frozenset(f"{family}MLP" for family in FAMILIES)


def _norm_math(hidden, weight, eps: float):
    scale = torch.rsqrt(hidden.float().pow(2).mean(-1, keepdim=True) + eps)
    return weight * (hidden.float() * scale).to(hidden.dtype), scale


def _norm_grad_math(kept, scale, weight, grad, dtype: torch.dtype, keep_output: bool, weight_grad: bool):
    if keep_output:  # kept = weight * normed (no zero in the weight)
        normed = kept.float() / weight.float()
    else:
        normed = kept.float() * scale
    grad_weight = None
    if weight_grad:
        grad_weight = (grad * normed.to(dtype)).reshape(-1, grad.shape[-1]).sum(0).to(weight.dtype)
    grad_normed = (grad * weight).float()
    grad_hidden = scale * (grad_normed - normed * (grad_normed * normed).mean(-1, keepdim=True))
    return grad_hidden.to(dtype), grad_weight


def _swiglu_math(gate, up):
    return F.silu(gate) * up


def _swiglu_grad_math(gate, up, grad):
    sigmoid = torch.sigmoid(gate.float())
    silu = gate.float() * sigmoid
    grad = grad.float()
    grad_gate = grad * up.float() * sigmoid * (1 + gate.float() * (1 - sigmoid))
    return grad_gate.to(gate.dtype), (grad * silu).to(up.dtype)


class _Kernels:
    """Runs the element-wise math above, as plain PyTorch operations or, when `fused` (CPU tensors
    only), compiled by torch.compile (dynamic shapes) into one fused kernel per function: each
    operation above is a pass over memory, and this work is memory-bound. Compiled once per
    process. Without a working compiler the first call warns and everything stays plain."""

    def __init__(self) -> None:
        self.fused = False
        self.used = False  # a compiled kernel ran
        self.failed: str | None = None
        self._compiled: dict = {}

    def reset(self, fused: bool) -> None:
        self.fused, self.used, self.failed = fused, False, None

    def __call__(self, function, *args):
        if (
            self.fused
            and self.failed is None
            and args[0].device.type == "cpu"
            and not torch.compiler.is_compiling()
        ):
            compiled = self._compiled.get(function)
            if compiled is None:
                # no compiled-graph cache on disk: torch 2.13's does not tell kernels built for
                # AVX-512 from AVX2 ones (ATEN_CPU_CAPABILITY), and a process that loaded the
                # other level's got NaN or crashed (tests/models/test_lean.py); a few seconds
                # of compiling per process instead
                compiled = torch.compile(function, dynamic=True, options={"fx_graph_cache": False})
                self._compiled[function] = compiled
            try:
                result = compiled(*args)
                self.used = True
                return result
            except Exception as error:  # e.g. no C++ compiler on this machine
                import warnings

                from sqltune.errors import SqltuneWarning

                self.failed = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
                warnings.warn(
                    f"lean_fused_kernels: torch.compile failed ({self.failed}); plain PyTorch operations instead",
                    SqltuneWarning,
                    stacklevel=2,
                )
        return function(*args)


kernels = _Kernels()


class _RmsNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, eps, keep_output):
        output, scale = kernels(_norm_math, hidden, weight, eps)
        ctx.keep_output, ctx.dtype = keep_output, hidden.dtype
        ctx.save_for_backward(output if keep_output else hidden, scale, weight)
        return output

    @staticmethod
    def backward(ctx, grad):
        kept, scale, weight = ctx.saved_tensors
        grad_hidden, grad_weight = kernels(
            _norm_grad_math, kept, scale, weight, grad, ctx.dtype, ctx.keep_output, ctx.needs_input_grad[1]
        )
        return grad_hidden, grad_weight, None, None


class _SwiGlu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return kernels(_swiglu_math, gate, up)

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        return kernels(_swiglu_grad_math, gate, up, grad.contiguous())


def rms_norm(
    hidden: torch.Tensor, weight: torch.Tensor, eps: float, keep_output: bool = False
) -> torch.Tensor:
    """Llama's RMSNorm, keeping a float32 scale per token and either `hidden` as it came or, with
    `keep_output` (the weight must have no zero), the output, from which the normalised values are
    recovered: the next layer's input projections keep that output anyway."""
    return _RmsNorm.apply(hidden, weight, eps, keep_output)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SiLU(gate) * up, keeping only `gate` and `up`."""
    return _SwiGlu.apply(gate, up)


def _norm_forward(self, hidden_states):
    weight = self.weight
    checked = (id(weight), weight._version)  # the optimizer's in-place steps bump the version
    if self._sqltune_nonzero[0] != checked:
        self._sqltune_nonzero = (checked, bool(weight.ne(0).all()))
    return rms_norm(hidden_states, weight, self.variance_epsilon, keep_output=self._sqltune_nonzero[1])


class _Recomputed:
    """Saved-tensor hooks that keep, in place of the tensor `kept` (or a view of it), the function
    that recomputes it; every other tensor goes to the hooks around them (a memory count, CPU
    offload), if any."""

    def __init__(self, kept: torch.Tensor, recompute):
        self.storage, self.recompute = kept.untyped_storage().data_ptr(), recompute
        top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
        self.outer = top(False) if top else None

    def pack(self, tensor):
        if tensor.untyped_storage().data_ptr() == self.storage:
            return _Recipe(self.recompute, tensor.size(), tensor.stride(), tensor.storage_offset())
        return self.outer[0](tensor) if self.outer else tensor

    def unpack(self, packed):
        if isinstance(packed, _Recipe):
            return packed.recompute().as_strided(packed.size, packed.stride, packed.offset)
        return self.outer[1](packed) if self.outer else packed


class _Recipe(NamedTuple):
    recompute: Callable[[], torch.Tensor]
    size: torch.Size
    stride: tuple
    offset: int


def _mlp_forward(self, x):
    gate, up = self.gate_proj(x), self.up_proj(x)
    hidden = swiglu(gate, up)
    if not (self._sqltune_recompute and torch.is_grad_enabled()) or torch.compiler.is_compiling():
        return self.down_proj(hidden)
    # the down projection's input: the LoRA (or a trained weight) keeps it for its weight gradient,
    # SwiGLU already keeps gate and up, and recomputing from them is one element-wise pass
    hooks = _Recomputed(hidden, lambda: kernels(_swiglu_math, gate, up))
    with torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack):
        return self.down_proj(hidden)


def grouped_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
):
    """transformers' SDPA attention with the key/value heads read in place of repeated copies."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (
        query.shape[1] == key.shape[1]
        or query.device.type != "cpu"
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
    ):
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is not None and attention_mask.dtype != query.dtype:
        attention_mask = _mask_as(attention_mask, query.dtype)
    output = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=bool(causal and attention_mask is None and query.shape[2] > 1),
        enable_gqa=True,
    )
    return output.transpose(1, 2).contiguous(), None


_converted: list = []  # the last (mask, its copy in the attention dtype)


def _mask_as(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`mask` as an additive mask in `dtype`, converted once for all the layers of a forward pass
    (SDPA converts a boolean mask in every layer, and every layer's copy is kept for the backward)."""
    if _converted and _converted[0][0] is mask and _converted[0][1].dtype == dtype:
        return _converted[0][1]
    if mask.dtype == torch.bool:
        additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    else:
        additive = mask.to(dtype)
    _converted[:] = [(mask, additive)]
    return additive


def use_lean_activations(model, recompute: bool = True, fused: bool = False) -> dict[str, int]:
    """Switch `model`'s RMSNorm and SwiGLU modules (FAMILIES) and, on the CPU, its attention; the
    number of modules switched, by kind. `recompute=False` (under gradient checkpointing, which
    recomputes whole layers anyway) keeps the down projection's input instead of recomputing it."""
    from sqltune.models.attention import switch_cpu_sdpa

    kernels.reset(fused)
    switched = {"rms_norm": 0, "swiglu": 0, "grouped_attention": 0}
    for module in model.modules():
        name = type(module).__name__
        if name in NORMS and hasattr(module, "variance_epsilon"):
            module._sqltune_nonzero = (None, False)
            module.forward = types.MethodType(_norm_forward, module)
            switched["rms_norm"] += 1
        elif name in MLPS and type(getattr(module, "act_fn", None)).__name__ in ("SiLU", "SiLUActivation"):
            module._sqltune_recompute = recompute
            module.forward = types.MethodType(_mlp_forward, module)
            switched["swiglu"] += 1
    switched["grouped_attention"] = int(switch_cpu_sdpa(model, ATTENTION_NAME, grouped_attention))
    return switched


def configure(model, training_args) -> None:
    """Lean activations as the training options ask (`lean_activations`, `lean_fused_kernels`;
    the down projection's input is kept under gradient checkpointing). `auto` for fused kernels is
    decided when training begins (`fused_for_long_runs`)."""
    if training_args.lean_activations:
        use_lean_activations(
            model,
            recompute=not training_args.gradient_checkpointing,
            fused=training_args.lean_fused_kernels is True,
        )


FUSED_MIN_STEPS = 50  # compiling costs ~12 s once; ~12% of a bf16 step wins that back by then


def fused_for_long_runs():
    """A TrainerCallback for `lean_fused_kernels=auto`: fused kernels when the run has at least
    FUSED_MIN_STEPS optimizer steps (the quickstart's 14 would not win back the compiling)."""
    from transformers import TrainerCallback

    class FusedForLongRuns(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            kernels.fused = state.max_steps >= FUSED_MIN_STEPS

    return FusedForLongRuns()


def settings(model) -> dict:
    """What the run card's `stage_settings` say: the modules trained lean (nothing if none)."""
    counts = {"rms_norm": 0, "swiglu": 0}
    for module in model.modules():
        forward = getattr(getattr(module, "forward", None), "__func__", None)
        if forward is _norm_forward:
            counts["rms_norm"] += 1
        elif forward is _mlp_forward:
            counts["swiglu"] += 1
    if not any(counts.values()):
        return {}
    config = getattr(model, "config", None)
    counts["grouped_attention"] = int(getattr(config, "_attn_implementation", None) == ATTENTION_NAME)
    counts["fused_kernels"] = kernels.used and kernels.failed is None
    return {"lean_activations": counts}
