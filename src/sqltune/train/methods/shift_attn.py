"""`shift_attn=true`: LongLoRA's shifted sparse attention (S2-Attn) while training on long prompts.

Long Text-to-SQL prompts are mostly schema. S2-Attn (Chen et al., "LongLoRA", 2023) cuts the cost of
attention during fine-tuning from the square of the sequence length to length x group: the sequence
is split into groups of `group_size_ratio` of its length (1/4, as in the paper) and each token
attends only within its group; in half of the heads the groups are shifted by half a group, so
information still flows between neighbouring groups. At inference the model attends as usual
(the paper's point: it is trained sparse and used dense), so the trained weights need nothing new.

It is registered as an attention function of transformers (`AttentionInterface`) under
`ATTENTION_NAME`, and a model is switched to it with `set_attn_implementation`; the mask that
transformers builds for it is SDPA's boolean mask. Unlike the paper's code, each group's mask is cut
out of that full mask at the tokens' true positions, so padding, packed sequences and causality stay
exact across the shifted groups' wrap-around (the tokens rolled to the end of the last group see
only their own past). A sequence whose length is not a multiple of the group is filled up with
masked slots. No library offers S2-Attn for transformers 5, hence this module.
"""

from __future__ import annotations

import math

import torch

from sqltune.errors import ConfigError
from sqltune.models import attention

ATTENTION_NAME = "sqltune_s2_attn"
RATIO_ATTRIBUTE = "s2_group_size_ratio"  # set on every attention module of a switched model
DEFAULT_GROUP_SIZE_RATIO = 0.25
# model types whose attention modules call the attention interface with (batch, heads, length, dim)
# states and a plain causal mask, as LlamaAttention does
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def check_supported(config) -> None:
    """A one-line error for a model whose attention S2-Attn does not cover."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"shift_attn: S2-Attn supports llama-family models ({', '.join(SUPPORTED_MODEL_TYPES)}), "
            f"not model_type {model_type!r}"
        )


def check_stage(stage: str) -> None:
    """S2-Attn trains on given text. GRPO samples its answers with the model in training mode (the
    prompts would be read with S2-Attn) and PPO samples and scores them in eval mode (ratios against
    plain attention): both need the model's own attention, so they refuse it in one line."""
    if stage in ("grpo", "ppo"):
        raise ConfigError(
            f"shift_attn: stage={stage} samples answers, which needs the model's full attention; "
            "S2-Attn is for pt, sft, rm, dpo, kto, orpo and simpo"
        )


def apply_shift_attn(model, group_size_ratio: float = DEFAULT_GROUP_SIZE_RATIO):
    """Switch `model` to S2-Attn with groups of `group_size_ratio` of the sequence; returns it."""
    check_supported(model.config)
    attention.register(ATTENTION_NAME, shifted_sparse_attention)
    model.set_attn_implementation(ATTENTION_NAME)
    for module in model.modules():
        if hasattr(module, "num_key_value_groups"):  # the attention modules
            setattr(module, RATIO_ATTRIBUTE, group_size_ratio)
    return model


def settings(model_args) -> dict:
    """What the run card's `stage_settings` say about S2-Attn (nothing unless it was used)."""
    if not model_args.shift_attn:
        return {}
    return {
        "shift_attn": {
            "group_size_ratio": model_args.group_size_ratio,
            "shifted_heads": "half, by half a group",
            "inference": "plain attention",
        }
    }


def _boolean_mask(attention_mask: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor:
    """The (batch, 1, length, length) mask, True where a query may attend to a key."""
    if attention_mask is None:  # SDPA's mask is left out when it would be plainly causal
        causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        return causal.expand(batch, 1, length, length)
    if attention_mask.dtype != torch.bool:  # an additive float mask: 0 where attended
        attention_mask = attention_mask == 0
    return attention_mask[:, :1, :, :length].expand(batch, 1, length, length)


def _grouped_attention(query, key, value, mask, order, size: int, dropout: float, scaling) -> torch.Tensor:
    """Attention within consecutive groups of `size` slots after reordering the slots by `order`
    (slot k of the reordered sequence holds slot order[k]); returned in the original slot order."""
    batch, heads, slots, dim = query.shape
    groups = slots // size

    def grouped(states: torch.Tensor) -> torch.Tensor:
        states = states[:, :, order].reshape(batch, heads, groups, size, dim)
        return states.transpose(1, 2).reshape(batch * groups, heads, size, dim)

    blocks = order.view(groups, size)
    group_mask = mask[:, :, blocks[:, :, None], blocks[:, None, :]]  # (batch, 1, groups, size, size)
    group_mask = group_mask.reshape(batch * groups, 1, size, size)
    out = torch.nn.functional.scaled_dot_product_attention(
        grouped(query), grouped(key), grouped(value), attn_mask=group_mask, dropout_p=dropout, scale=scaling
    )
    out = out.reshape(batch, groups, heads, size, dim).transpose(1, 2).reshape(batch, heads, slots, dim)
    return out[:, :, torch.argsort(order)]


def shifted_sparse_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: states (batch, heads, length, dim) in, output
    (batch, length, heads, dim) out. Outside training, and when keys come from a cache, this is
    plain SDPA attention."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    length = query.shape[2]
    if not module.training or key.shape[2] != length:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    repeats = getattr(module, "num_key_value_groups", 1)
    key = key.repeat_interleave(repeats, dim=1)  # grouped-query attention: one key head per query head
    value = value.repeat_interleave(repeats, dim=1)
    batch, heads = query.shape[:2]
    size = max(1, math.ceil(length * getattr(module, RATIO_ATTRIBUTE, DEFAULT_GROUP_SIZE_RATIO)))
    slots = math.ceil(length / size) * size
    mask = torch.zeros(batch, 1, slots, slots, dtype=torch.bool, device=query.device)
    mask[:, :, :length, :length] = _boolean_mask(attention_mask, batch, length, query.device)
    mask |= torch.eye(slots, dtype=torch.bool, device=query.device)  # no row is empty: no NaN anywhere
    if slots > length:  # fill up to whole groups with slots nothing attends to
        fill = (0, 0, 0, slots - length)
        query, key, value = (torch.nn.functional.pad(s, fill) for s in (query, key, value))
    unshifted = heads - heads // 2
    positions = torch.arange(slots, device=query.device)
    halves = []
    for part, shift in ((slice(0, unshifted), 0), (slice(unshifted, heads), size // 2)):
        if part.start == part.stop:
            continue
        order = (positions + shift) % slots  # shifted heads: groups start half a group later
        halves.append(
            _grouped_attention(
                query[:, part], key[:, part], value[:, part], mask, order, size, dropout, scaling
            )
        )
    out = torch.cat(halves, dim=1)[:, :, :length]
    return out.transpose(1, 2).contiguous(), None
