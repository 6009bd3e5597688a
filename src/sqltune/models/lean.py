"""Leaner activations for training: what the backward pass keeps, without recomputing matmuls.

Measured with `bench/train_memory.py` (SmolLM2-135M, LoRA, bf16, batch 8 x 512), a training step
keeps 3.2 GB for its backward pass, and much of it is the output of cheap element-wise work:

* RMSNorm keeps its input upcast to float32 (540 MB over 60 norms). `rms_norm` keeps the input as
  it came (bfloat16) and one float32 scale per token, and recomputes the normalised values in the
  backward pass.
* The SwiGLU MLP keeps the gate, SiLU(gate) and the up projection (1.1 GB). `swiglu` keeps the gate
  and the up projection only; SiLU is recomputed.
* Grouped-query attention repeats every key/value head for the query heads that share it before
  calling SDPA whenever there is a padding mask, and the repeated copies are kept (270 MB where
  90 MB would do). `grouped_attention` lets SDPA read the shared heads (`enable_gqa`); CPU only,
  as GPU kernels without native GQA support would fall back to the slow path.

`use_lean_activations(model)` switches the modules of the model families whose code is exactly
this (Llama, Qwen2/3, Mistral) and leaves every other module as it is. Results are the same up to
float rounding (tests compare gradients with the stock modules).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

ATTENTION_NAME = "sqltune_gqa"
FAMILIES = ("Llama", "Qwen2", "Qwen3", "Mistral")
NORMS = frozenset(f"{family}RMSNorm" for family in FAMILIES)
MLPS = frozenset(f"{family}MLP" for family in FAMILIES)


class _RmsNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, eps):
        scale = torch.rsqrt(hidden.float().pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(hidden, scale, weight)
        return weight * (hidden.float() * scale).to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad):
        hidden, scale, weight = ctx.saved_tensors
        normed = hidden.float() * scale
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad * normed.to(hidden.dtype)).reshape(-1, grad.shape[-1]).sum(0).to(weight.dtype)
        grad_normed = (grad * weight).float()
        grad_hidden = scale * (grad_normed - normed * (grad_normed * normed).mean(-1, keepdim=True))
        return grad_hidden.to(hidden.dtype), grad_weight, None


class _SwiGlu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        sigmoid = torch.sigmoid(gate.float())
        silu = gate.float() * sigmoid
        grad = grad.float()
        grad_gate = grad * up.float() * sigmoid * (1 + gate.float() * (1 - sigmoid))
        return grad_gate.to(gate.dtype), (grad * silu).to(up.dtype)


def rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm, keeping `hidden` as it came and a float32 scale per token."""
    return _RmsNorm.apply(hidden, weight, eps)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SiLU(gate) * up, keeping only `gate` and `up`."""
    return _SwiGlu.apply(gate, up)


def _norm_forward(self, hidden_states):
    return rms_norm(hidden_states, self.weight, self.variance_epsilon)


def _mlp_forward(self, x):
    return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


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


def use_lean_activations(model) -> dict[str, int]:
    """Switch `model`'s RMSNorm and SwiGLU modules (FAMILIES) and, on the CPU, its attention; the
    number of modules switched, by kind."""
    from sqltune.models.attention import switch_cpu_sdpa

    switched = {"rms_norm": 0, "swiglu": 0, "grouped_attention": 0}
    for module in model.modules():
        name = type(module).__name__
        if name in NORMS and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_norm_forward, module)
            switched["rms_norm"] += 1
        elif name in MLPS and type(getattr(module, "act_fn", None)).__name__ in ("SiLU", "SiLUActivation"):
            module.forward = types.MethodType(_mlp_forward, module)
            switched["swiglu"] += 1
    switched["grouped_attention"] = int(switch_cpu_sdpa(model, ATTENTION_NAME, grouped_attention))
    return switched


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
    return {"lean_activations": counts}
